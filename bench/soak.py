"""Soak: thousands of conversations opened, spoken to and dropped, and what the process holds afterwards.

    python -m bench.soak [--cycles 1000] [--warm-up 100] [--engine fake|tiny] [--out bench/results/soak.json]

The real server (`bench.local_server.serving`, `--resume-grace` 1 s) and its clients share this process and its
loop. What is soaked is the runtime (sockets, driver, session, audio decoding, resume), so the engine is the
scripted fake by default (replies of 24 words, 5 ms apart): the tiny model (`--engine tiny`, which adds its KV
pool to the checks) spends about 1 s of a 2-core CPU on a cycle. `--cycles` cycles of each kind, alternating:

- drop: connect, send a spoken utterance (espeak-ng, PCM16 at 24 kHz) and ask for a response; then, in turn,
  close cleanly after its `response.done`, drop the connection (no close frame) after it, or drop it at the
  response's first delta (mid-generation). A dropped conversation waits out the resume grace, then ends.
- resume: the same turn with a longer reply, dropped at its first delta; a new connection resumes it
  (`?aural.resume=<session id>`), gets `session.created` and `aural.session.resumed` and reads the rest of the
  response (when it still ran) to its `response.done`, then closes cleanly.

Every response read to its end is checked (`tests.support.sequence`). Every 100 cycles the process's
footprint (resident memory, open fds, threads, live conversations, KV blocks in use) is sampled. After the
warm-up cycles, and at the end, the server is left to settle (every dropped conversation's grace runs out, the
cycle collector runs, glibc's free memory goes back to the system) and measured: no conversation may be left,
no KV block used, no more threads or fds than after the warm-up, the resident memory may grow by less than 5 %
from after the warm-up, and nothing may be logged at error level. The report gives the growth before the
allocator's free memory went back too (`untrimmed_rss_growth_pct`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aural.runtime.logs import configure_logging
from aural.runtime.server.timeouts import Timeouts
from bench.local_server import Footprint, LocalServer, release_free_memory, served, write_report
from bench.wire import conversation, utterance_pcm
from tests.support.sequence import check_response

OUT = Path(__file__).with_name("results") / "soak.json"
PHRASE = "Hello, can you hear me?"
REPLY_TOKENS = 4
RESUMED_REPLY_TOKENS = 32  # long enough to be running still when the new connection takes over
RESUME_GRACE = 1.0
MAX_RSS_GROWTH = 0.05
SAMPLE_EVERY = 100
DROPS = ("closed after the response", "dropped after the response", "dropped mid-generation")


async def drop_cycle(server: LocalServer, pcm: bytes, index: int) -> str:
    """One conversation ended the `index`-th way of `DROPS`; returns that way."""
    how = DROPS[index % len(DROPS)]
    async with conversation(server.url()) as client:
        await client.speak(pcm, REPLY_TOKENS)
        if how == "dropped mid-generation":
            await client.until("response.output_text.delta")
            client.drop()
            return how
        await client.until("response.created")
        start = len(client.events) - 1
        await client.until("response.done")
        check_response(client.events[start:])
        if how == "dropped after the response":
            client.drop()
    return how


async def resume_cycle(server: LocalServer, pcm: bytes) -> str:
    """A conversation dropped mid-generation and resumed; returns whether the response still ran then."""
    async with conversation(server.url()) as first:
        await first.speak(pcm, RESUMED_REPLY_TOKENS)
        response_id = (await first.until("response.created"))["response"]["id"]
        item_id = (await first.until("response.output_item.added"))["item"]["id"]
        await first.until("response.output_text.delta")
        first.drop()
    async with conversation(server.url(**{"aural.resume": first.session_id})) as second:
        assert second.session_id == first.session_id, "the resumed session is the same"
        resumed = await second.recv()
        assert resumed["type"] == "aural.session.resumed", resumed
        assert resumed["item_ids"][-1] == item_id, "the conversation holds the reply being made"
        if resumed.get("response_id") is None:
            return "resumed after the response ended"
        assert resumed["response_id"] == response_id, resumed
        start = len(second.events)
        await second.until("response.done")
        checked = check_response(second.events[start:], whole=False)
        assert checked.response_id == response_id and checked.status in ("completed", "incomplete"), checked
        assert checked.item_ids == [item_id], checked
    return "resumed while it ran"


@dataclass(frozen=True)
class Settled:
    """The footprint of a settled server, and its resident memory before the allocator's free memory went back."""

    footprint: Footprint
    untrimmed_rss_mib: float


async def settled(server: LocalServer, grace: float, threads: int | None = None) -> Settled:
    """The footprint once no conversation is left and, with `threads`, the threads of the ended ones have
    exited, down to that many (bounded: a few times the resume grace, then it is what it is). Garbage in
    reference cycles is collected first: each cycle leaves some (aiohttp's and websockets' sockets, transports
    and the exceptions of a lost connection), which the cycle collector frees when it runs, and which is no leak.
    Then glibc's free memory goes back to the system (`release_free_memory`): what stays is what is held."""
    for _ in range(int(grace * 400) + 500):
        if not server.footprint().conversations:
            break
        await asyncio.sleep(0.01)
    gc.collect()
    for _ in range(int(grace * 400) + 500):
        footprint = server.footprint()
        if not footprint.conversations and not footprint.kv_blocks_used and footprint.threads <= (threads or 1 << 16):
            break
        await asyncio.sleep(0.01)
    untrimmed = server.footprint().rss_mib
    release_free_memory()
    return Settled(server.footprint(), untrimmed)


async def soak(server: LocalServer, cycles: int, warm_up: int, grace: float = RESUME_GRACE) -> dict[str, Any]:
    """`cycles` drop cycles and `cycles` resume cycles, alternating; the report (see the module's docstring)."""
    pcm = utterance_pcm(PHRASE)
    outcomes: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    series: list[dict[str, Any]] = []
    start = server.footprint()
    warm: Settled | None = None
    began = window = time.perf_counter()
    total = 2 * cycles
    for done in range(1, total + 1):
        try:
            work = drop_cycle(server, pcm, done // 2) if done % 2 else resume_cycle(server, pcm)
            outcomes[await work] += 1
        except Exception as exc:  # counted, and the soak goes on: its report says what failed
            failures[f"{'drop' if done % 2 else 'resume'}: {type(exc).__name__}: {exc}"[:200]] += 1
        if done % SAMPLE_EVERY == 0 or done == total:
            now = time.perf_counter()
            since = done - (series[-1]["cycles"] if series else 0)
            series.append({"cycles": done, "cycles_per_s": round(since / (now - window), 2), **_rounded(server)})
            window = now
        if done == 2 * warm_up or (done == total and warm is None):
            warm = await settled(server, grace)
            window = time.perf_counter()  # the settling is no cycle's time
    wall = time.perf_counter() - began
    assert warm is not None
    settled_end = await settled(server, grace, warm.footprint.threads)
    end = settled_end.footprint
    growth = (end.rss_mib - warm.footprint.rss_mib) / warm.footprint.rss_mib
    untrimmed = (settled_end.untrimmed_rss_mib - warm.untrimmed_rss_mib) / warm.untrimmed_rss_mib
    return {
        "cycles": {"drop": cycles, "resume": cycles},
        "outcomes": dict(outcomes),
        "failures": dict(failures),
        "wall_s": round(wall, 1),
        "cycles_per_s": round(total / wall, 2),
        "start": asdict(start),
        "after_warm_up": {"cycles": 2 * warm_up, **asdict(warm)},
        "end": asdict(settled_end),
        "rss_growth_pct": round(100 * growth, 2),
        "untrimmed_rss_growth_pct": round(100 * untrimmed, 2),
        "leaks": {
            "conversations": end.conversations,
            "kv_blocks_used": end.kv_blocks_used,
            "threads": end.threads - warm.footprint.threads,
            "fds": end.fds - warm.footprint.fds,
        },
        "series": series,
    }


def _rounded(server: LocalServer) -> dict[str, Any]:
    footprint = asdict(server.footprint())
    return {**footprint, "rss_mib": round(footprint["rss_mib"], 1)}


def passed(report: dict[str, Any]) -> bool:
    """Whether the soak met its bounds: nothing failed, leaked or logged at error level, memory grew < 5 %."""
    leaks = report["leaks"]
    return (
        not report["failures"]
        and not report["error_logs"]
        and leaks["conversations"] == 0
        and not leaks["kv_blocks_used"]
        and leaks["threads"] <= 0
        and leaks["fds"] <= 0
        and report["rss_growth_pct"] < 100 * MAX_RSS_GROWTH
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    def work(server: LocalServer) -> Awaitable[dict[str, Any]]:
        return soak(server, args.cycles, args.warm_up, args.resume_grace)

    report = await served(args.engine, work, timeouts=Timeouts(resume_grace=args.resume_grace))
    report = {"resume_grace_s": args.resume_grace, **report}
    report["passed"] = passed(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000, help="cycles of each kind (drop, resume)")
    parser.add_argument("--warm-up", type=int, default=100, help="cycles of each kind before the baseline")
    parser.add_argument("--engine", choices=["fake", "tiny"], default="fake")
    parser.add_argument("--resume-grace", type=float, default=RESUME_GRACE)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    configure_logging("warning")
    report = asyncio.run(run(args))
    write_report(report, args.out)
    print(json.dumps({key: value for key, value in report.items() if key != "series"}, indent=2))


if __name__ == "__main__":
    main()
