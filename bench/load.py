"""Load: many conversations at once, every event in order and in its own conversation.

    python -m bench.load [--conversations 100] [--turns 3] [--engine tiny|fake] [--out bench/results/load.json]

The real server (`bench.local_server.serving`, the tiny model on the CPU by default) and N clients in this
process connect at once, over loopback; each holds one conversation of speech, text, speech turns (the first
`--turns`): a spoken utterance (espeak-ng, PCM16 at 24 kHz) committed, or a text message naming the
conversation and the turn, then `response.create`. Checked for every conversation:

- each response's events in order (`tests.support.sequence.check_response`), none missing, and one response
  per turn;
- nothing crossed: the `previous_item_id` of each `conversation.item.added` is the conversation's own
  previous item, its text message is its own, and no item, response or session id shows up in two
  conversations;
- no `error` event, and nothing logged at error level by the server.

Time to first token runs from sending `response.create` to the first text delta (for a spoken turn, right
after the audio's commit: it takes in decoding the audio, the prefill and the wait for the device);
p50 and p99 over every turn of every conversation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aural.runtime.logs import configure_logging
from bench.local_server import LocalServer, served, write_report
from bench.wire import Conversation, Event, conversation, utterance_pcm
from tests.support.sequence import check_response, responses_in

OUT = Path(__file__).with_name("results") / "load.json"
PHRASE = "Hello, can you hear me?"
TURNS = ("speech", "text", "speech")
REPLY_TOKENS = 8


def own_text(index: int, turn: int) -> str:
    return f"This is conversation {index}, turn {turn}."


@dataclass(frozen=True)
class Talk:
    """One conversation as its client read it."""

    index: int
    session_id: str
    events: list[Event]
    ttfts_s: list[float]


async def talk(server: LocalServer, index: int, turns: int, pcm: bytes) -> Talk:
    """Conversation `index`: its turns, one after the other."""
    async with conversation(server.url()) as client:
        ttfts = [await _turn(client, TURNS[turn], pcm, own_text(index, turn)) for turn in range(turns)]
        return Talk(index, client.session_id, client.events, ttfts)


async def _turn(client: Conversation, kind: str, pcm: bytes, text: str) -> float:
    """One turn read to its `response.done`; returns its time to first token."""
    if kind == "speech":
        await client.speak(pcm, REPLY_TOKENS)
    else:
        await client.write(text, REPLY_TOKENS)
    asked, first = time.perf_counter(), None
    while (event := await client.recv())["type"] != "response.done":
        if first is None and event["type"] == "response.output_text.delta":
            first = time.perf_counter()
    assert first is not None, "a response without text"
    return first - asked


def check_talk(talk: Talk, turns: int) -> set[str]:
    """Check one conversation's events (see the module's docstring); returns the ids it saw.

    Raises:
        AssertionError: what is out of order, missing or not its own.
    """
    events = talk.events
    assert not [event for event in events if event["type"] == "error"], "error events"
    responses = [check_response(response) for response in responses_in(events)]
    assert len(responses) == turns, f"{len(responses)} responses for {turns} turns"
    assert all(response.status in ("completed", "incomplete") for response in responses), responses
    added = [event["item"] for event in events if event["type"] == "conversation.item.added"]
    previous_ids = [event.get("previous_item_id") for event in events if event["type"] == "conversation.item.added"]
    item_ids = [item["id"] for item in added]
    assert previous_ids == [None, *item_ids[:-1]], "previous_item_id is not this conversation's previous item"
    assert len(added) == 2 * turns, f"{len(added)} items for {turns} turns"
    texts = [part["text"] for item in added for part in item.get("content", []) if part["type"] == "input_text"]
    assert texts == [own_text(talk.index, turn) for turn in range(turns) if TURNS[turn] == "text"], texts
    return {talk.session_id, *item_ids, *(response.response_id for response in responses)}


async def load(server: LocalServer, conversations: int, turns: int) -> dict[str, Any]:
    """`conversations` at once, `turns` each; the report (see the module's docstring)."""
    pcm = utterance_pcm(PHRASE)
    began = time.perf_counter()
    results = await asyncio.gather(*(talk(server, i, turns, pcm) for i in range(conversations)), return_exceptions=True)
    wall = time.perf_counter() - began
    failures: list[str] = []
    seen: dict[str, int] = {}
    ttfts: list[float] = []
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            failures.append(f"conversation {index}: {type(result).__name__}: {result}"[:300])
            continue
        try:
            ids = check_talk(result, turns)
        except AssertionError as exc:
            failures.append(f"conversation {index}: {exc}"[:300])
            continue
        failures += [f"conversation {index}: {shared} is conversation {seen[shared]}'s" for shared in ids & seen.keys()]
        seen |= dict.fromkeys(ids, index)
        ttfts += result.ttfts_s
    return {
        "conversations": conversations,
        "turns": list(TURNS[:turns]),
        "responses_checked": len(ttfts),
        "failures": failures,
        "wall_s": round(wall, 1),
        "ttft_ms": _percentiles(ttfts),
    }


def _percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(seconds, [50, 99])
    return {"p50": round(1000 * p50, 1), "p99": round(1000 * p99, 1), "max": round(1000 * max(seconds), 1)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    def work(server: LocalServer) -> Awaitable[dict[str, Any]]:
        return load(server, args.conversations, args.turns)

    report = await served(args.engine, work, max_sessions=max(64, args.conversations))
    report = {"reply_tokens": REPLY_TOKENS, **report}
    report["passed"] = not report["failures"] and not report["error_logs"]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--turns", type=int, choices=range(1, len(TURNS) + 1), default=len(TURNS))
    parser.add_argument("--engine", choices=["tiny", "fake"], default="tiny")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    configure_logging("warning")
    report = asyncio.run(run(args))
    write_report(report, args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
