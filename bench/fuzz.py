"""Fuzzing the wire: thousands of hostile messages against the real server, and the event loop's worst stall
at the limits.

    python -m bench.fuzz [--messages 10000] [--engine fake|tiny] [--out bench/results/fuzz.json]

The server (`create_app`, default `Limits`) runs on a loopback port in a thread of this process
(`bench.local_server.ThreadedServer`), with the scripted fake engine (the default) or the tiny model on the CPU.
Connections of 10 frames each, drawn by hypothesis from `tests.support.hostile` (events generated from the
protocol's JSON Schema, the same with one hostile change, frames no event can be), each followed by a probe that
marks the end of the server's answers to it (as the wire fuzz test does). Counted: the server's errors by code, frames
that had to be refused and were not, `server_error` answers, records logged at error level (tracebacks),
connections lost, and whether a text turn works at the end of each connection.

Then the loop's stall: a timer on the server's loop records its worst lag while one connection sends
`session.update`s whose tools sit at the limits (the schema checks and, with the tiny model, the grammar
compilation run on the loop), and the 10,000-property tool that stalled it for 3.5 s before the limits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from aural.protocols.limits import DEFAULT_LIMITS
from aural.runtime.logs import configure_logging
from bench.local_server import ErrorRecords, ThreadedServer, load_engine
from tests.support.hostile import Frame, hostile_frames

FRAMES_PER_CONNECTION = 10
MODEL = "fuzz"
OUT = Path(__file__).with_name("results") / "fuzz.json"
T = TypeVar("T")


# --- hostile messages ------------------------------------------------------------------------------


class Tally:
    """What the server did with the frames."""

    def __init__(self) -> None:
        self.frames: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.unrefused: Counter[str] = Counter()
        self.connections_lost = 0
        self.turns = Counter[str]()

    def answers(self, ws: ClientConnection, frame: Frame, index: int) -> None:
        probe = f"probe_{index}"
        ws.send(frame.data)
        ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": probe, "event_id": probe}))
        self.frames["refused" if frame.refused else "maybe valid"] += 1
        errors = 0
        while True:
            event = json.loads(ws.recv(timeout=30))
            if event["type"] != "error":
                continue
            if event["error"].get("event_id") == probe:
                break
            errors += 1
            self.errors[event["error"]["code"]] += 1
        if frame.refused and errors != 1:
            self.unrefused[frame.kind] += 1

    def turn(self, ws: ClientConnection) -> None:
        """A text turn after whatever the frames set; counted as worked or failed."""
        reset = {
            "type": "session.update",
            "session": {
                "tools": [],
                "tool_choice": "auto",
                "output_modalities": ["text"],
                "max_output_tokens": 8,
                "audio": {"input": {"format": {"type": "audio/pcm"}, "turn_detection": None}},
            },
        }
        ws.send(json.dumps(reset))
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello?"}]}
        ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
        for _ in range(20):
            ws.send(json.dumps({"type": "response.create", "event_id": "final"}))
            while True:
                event = json.loads(ws.recv(timeout=60))
                if event["type"] == "response.created":
                    break
                if event["type"] == "error" and event["error"].get("event_id") == "final":
                    break
            if event["type"] == "response.created":
                break
            while event["type"] != "response.done":  # a response was still running: wait it out
                event = json.loads(ws.recv(timeout=60))
        while event["type"] != "response.done":
            event = json.loads(ws.recv(timeout=60))
        self.turns["worked" if event["response"]["status"] in ("completed", "incomplete") else "failed"] += 1


def fuzz(url: str, messages: int) -> Tally:
    tally = Tally()

    @settings(
        max_examples=messages // FRAMES_PER_CONNECTION,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(hostile_frames(), min_size=FRAMES_PER_CONNECTION, max_size=FRAMES_PER_CONNECTION))
    def one_connection(frames: list[Frame]) -> None:
        try:
            with connect(url, max_size=None, open_timeout=30) as ws:
                json.loads(ws.recv(timeout=30))  # session.created
                for index, frame in enumerate(frames):
                    tally.answers(ws, frame, index)
                tally.turn(ws)
        except (ConnectionClosed, TimeoutError):
            tally.connections_lost += 1

    one_connection()
    return tally


# --- the loop's stall at the limits ----------------------------------------------------------------


def _tool(name: str, properties: int, *, pad: int = 0) -> dict[str, Any]:
    props = {f"p{i}": {"type": "string"} for i in range(properties)}
    return {
        "type": "function",
        "name": name,
        "description": "d" * pad,
        "parameters": {"type": "object", "properties": props},
    }


def _deep_tool(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range((depth - 1) // 2):
        schema = {"type": "object", "properties": {"a": schema}}
    return {"type": "function", "name": "deep", "parameters": schema}


def _fits(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for tool in tools:
        size = len(json.dumps(tool["parameters"], separators=(",", ":")))
        assert size <= DEFAULT_LIMITS.max_tool_schema_bytes, size
    return tools


STALL_CASES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "2 tools of 16 KiB (32 KiB in all)": lambda: _fits([_tool("a", 640), _tool("b", 640)]),
    "64 tools of 500 B": lambda: _fits([_tool(f"t{i}", 20) for i in range(64)]),
    "a schema 31 deep": lambda: _fits([_deep_tool(31)]),
    "10,000 properties (refused)": lambda: [_tool("big", 10_000)],
}


async def _watch(stop: asyncio.Event, lags: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        asked = loop.time()
        await asyncio.sleep(0.001)
        lags.append(loop.time() - asked - 0.001)


def stalls(server: ThreadedServer, repeats: int = 5) -> dict[str, Any]:
    """The worst lag of the server's loop while each case's `session.update` is handled, and its answer."""
    results: dict[str, Any] = {}
    with connect(server.server.url(MODEL), max_size=None) as ws:
        json.loads(ws.recv(timeout=30))
        for name, tools in STALL_CASES.items():
            update = json.dumps({"type": "session.update", "session": {"tools": tools()}})
            stop, lags = asyncio.Event(), list[float]()
            watcher = asyncio.run_coroutine_threadsafe(_watch(stop, lags), server.loop)
            answers = []
            for _ in range(repeats):
                ws.send(update)
                event = json.loads(ws.recv(timeout=60))
                answers.append(event["error"]["code"] if event["type"] == "error" else event["type"])
            server.loop.call_soon_threadsafe(stop.set)
            watcher.result()
            results[name] = {
                "bytes": len(update),
                "answer": sorted(set(answers)),
                "worst_lag_ms": round(max(lags) * 1e3, 1),
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--engine", choices=["fake", "tiny"], default="fake")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    configure_logging("error")
    started = time.perf_counter()
    engine = load_engine(args.engine)
    with ErrorRecords.installed() as logged, ThreadedServer(engine, model_names=[MODEL]) as server:
        tally = fuzz(server.server.url(MODEL), args.messages)
        stall = stalls(server)
    asyncio.run(engine.close())
    report = {
        "engine": args.engine,
        "messages": sum(tally.frames.values()),
        "frames": dict(tally.frames),
        "connections": sum(tally.turns.values()) + tally.connections_lost,
        "errors_by_code": dict(tally.errors.most_common()),
        "server_error_answers": tally.errors["server_error"],
        "refused_frames_without_one_error": dict(tally.unrefused),
        "tracebacks": logged.tracebacks,
        "error_log_records": len(logged.records),
        "connections_lost": tally.connections_lost,
        "turn_after": dict(tally.turns),
        "loop_stall_at_limits": stall,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
