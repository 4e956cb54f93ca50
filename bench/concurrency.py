"""Many conversations at once: aggregate tokens/s, time to first token and the longest wait between tokens.

The real server (`aural serve` in its own process, a built-in preset on the CPU) and N SDK clients in this
process, N in `--counts`. Each client holds one conversation of `--turns` turns; a turn adds 2 s of
speech-like audio and an instruction (as `bench.turns` does), waits until the server has decoded it, then
asks for a reply of `--tokens` tokens. The clients start `--stagger` seconds apart (calls do not all
arrive in the same instant). Three pacings (`--pacing`):

- `vad`: a voice bot's call. Each turn is espeak-ng speech (3-4 s) streamed in real time in 20 ms chunks,
  then silence, with server VAD (silence 500 ms): the server finds the turn, reads it ahead while the
  user falls silent and answers it. Time to first token runs from `input_audio_buffer.speech_stopped`.
- `speech`: the user speaks each turn's audio (2 s, not sent meanwhile) before the item is added and the
  response asked for; time to first token runs from `response.create`.
- `saturated`: each client sends its next turn the moment a reply ends (a stress test, with the device
  never idle); time to first token runs from `response.create`.

With every reply `--tokens` long and every turn alike, the clients fall into lockstep: their replies end
together, so their next turns arrive together and queue for the device. People do not: `--pause LO,HI`
makes each user wait a random time (uniform in seconds, seeded by conversation and turn, so the `1` row
and the N rows wait alike) before each turn after the first, as a caller listening to the reply and
thinking would (`vad` and `speech` pacings; the results go to `concurrency_<pacing>_paused.*`).

The `1` row is each of the first `--alone` (8) conversations alone, one after another: the replies of the
random-weight model differ from one conversation to the next (some begin with bytes that form no character
and show no delta for several tokens), so the row that N at once are compared with holds the same
conversations, with the same greedy replies.

Per N: the aggregate output tokens/s (all replies' tokens over the wall time from the first request to
the last reply), the time to first token (from `response.create` to the first delta) at p50 and p95 over
every turn of every conversation, the median interval between tokens within a reply, and the longest
gap any stream saw between two of its deltas (a prefill of someone else's long turn shows up here).
The replies of the random-weight model may end early at a sampled end token; tokens are counted from
each response's usage, so a short reply counts for what it produced.

    python -m bench.concurrency [--preset medium] [--counts 1,2,4,8,16] [--turns 4] [--tokens 48] [--alone 8]
        [--pacing vad|speech|saturated] [--pause LO,HI]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import numpy.typing as npt
import torch

import aural.sdk
from aural.protocols.models import ServerVad
from aural.protocols.server_events import (
    ConversationItemDone,
    InputAudioBufferSpeechStopped,
    ResponseDone,
    ResponseOutputTextDelta,
)
from aural.runtime.engine.base import SAMPLE_RATE
from aural.runtime.logs import configure_logging
from bench.conversation import INSTRUCTIONS, speech_like
from bench.local_server import aural_serve
from bench.turn_latency import PHRASES
from tests.support.speech import speak

WIRE_RATE = 24000
CHUNK_MS = 20
TARGET_SPEEDUP = 4.0  # tokens/s of 8 at once over one alone
TARGET_TTFT_GROWTH = 3.0  # TTFT p95 of 8 at once over one alone


@dataclass(frozen=True)
class TurnResult:
    ttft_s: float
    tokens: int
    intervals_s: list[float]  # between consecutive deltas
    started: float
    ended: float


async def conversation(url: str, model: str, index: int, args: argparse.Namespace, delay: float) -> list[TurnResult]:
    """One client's conversation; its turns' timings."""
    await asyncio.sleep(delay)
    results = []
    async with aural.sdk.connect(url, model=model) as conn:
        for turn in range(args.turns):
            audio = speech_like(1000 * index + turn)
            if args.pacing == "speech":
                await think(index, turn, args)
                await asyncio.sleep(len(audio) / SAMPLE_RATE)  # the user says it
            await conn.add_message("user", audio=audio, sample_rate=SAMPLE_RATE, text=INSTRUCTIONS[turn % 10])
            while not isinstance(await conn.recv(), ConversationItemDone):
                pass  # decoded: what follows is the engine's work alone
            start = time.perf_counter()
            stream = conn.create_response(max_output_tokens=args.tokens)
            arrivals = []
            async for _ in stream:
                arrivals.append(time.perf_counter())
            assert stream.response is not None and stream.response.usage is not None
            produced = stream.response.usage.output_tokens
            if not arrivals:
                continue
            gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
            results.append(TurnResult(arrivals[0] - start, produced, gaps, start, arrivals[-1]))
    return results


async def think(index: int, turn: int, args: argparse.Namespace) -> None:
    """The user's pause before a turn after the first: seeded by conversation and turn, the same in every row."""
    low, high = args.pause
    if turn and high > 0:
        await asyncio.sleep(random.Random(1000 * index + turn).uniform(low, high))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def voice_call(url: str, model: str, index: int, args: argparse.Namespace, delay: float) -> list[TurnResult]:
    """One client's call with server VAD: speech streamed in real time, the server answering each turn."""
    await asyncio.sleep(delay)
    results = []
    chunk = 2 * WIRE_RATE * CHUNK_MS // 1000
    async with aural.sdk.connect(url, model=model) as conn:
        await conn.update_session(turn_detection=ServerVad(silence_duration_ms=500), max_output_tokens=args.tokens)
        for turn in range(args.turns):
            await think(index, turn, args)
            audio = _pcm16(speak(PHRASES[(index + turn) % len(PHRASES)], rate=WIRE_RATE))
            audio += bytes(2 * WIRE_RATE)  # a second of silence: the turn ends in it
            sender = asyncio.create_task(_stream(conn, audio, chunk))
            stopped, arrivals, produced = 0.0, [], 0
            async for event in conn:
                if isinstance(event, InputAudioBufferSpeechStopped):
                    stopped = time.perf_counter()
                elif isinstance(event, ResponseOutputTextDelta):
                    arrivals.append(time.perf_counter())
                elif isinstance(event, ResponseDone):
                    produced = event.response.usage.output_tokens if event.response.usage else 0
                    break
            await sender
            if arrivals and stopped:
                gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
                results.append(TurnResult(arrivals[0] - stopped, produced, gaps, stopped, arrivals[-1]))
    return results


async def _stream(conn: aural.sdk.Connection, pcm: bytes, chunk: int) -> None:
    """Append PCM16 in 20 ms chunks, in real time."""
    started = time.perf_counter()
    for index, start in enumerate(range(0, len(pcm), chunk)):
        await conn.append_audio(pcm[start : start + chunk])
        ahead = started + (index + 1) * CHUNK_MS / 1000 - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)


def _pcm16(samples: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def run_count(url: str, model: str, count: int, args: argparse.Namespace) -> dict[str, Any]:
    """N conversations at once; for N = 1, each of the first `--alone` conversations alone, one after another
    (so that the `1` row times the same conversations, and the same replies, as the rows it is compared with)."""
    talk = voice_call if args.pacing == "vad" else conversation
    if count == 1:
        runs = [await talk(url, model, i, args, 0.0) for i in range(args.alone)]
        wall = sum(_wall(run) for run in runs if run)
    else:
        runs = await asyncio.gather(*(talk(url, model, i, args, i * args.stagger) for i in range(count)))
        wall = _wall([turn for run in runs for turn in run])
    turns = [turn for run in runs for turn in run]
    produced = sum(turn.tokens for turn in turns)
    ttfts = [turn.ttft_s for turn in turns]
    intervals = [gap for turn in turns for gap in turn.intervals_s]
    return {
        "conversations": count,
        "replies": len(turns),
        "output_tokens": produced,
        "wall_s": wall,
        "tokens_per_s": produced / wall,
        "ttft_ms_p50": 1000 * statistics.median(ttfts),
        "ttft_ms_p95": 1000 * percentile(ttfts, 0.95),
        "delta_interval_ms_p50": 1000 * statistics.median(intervals) if intervals else None,
        "longest_gap_ms": 1000 * max(intervals) if intervals else None,
    }


def _wall(turns: list[TurnResult]) -> float:
    """From the first request to the last reply's end."""
    return max(turn.ended for turn in turns) - min(turn.started for turn in turns)


def summarize(args: argparse.Namespace, rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_count = {row["conversations"]: row for row in rows}
    report: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "config": {
            key: getattr(args, key)
            for key in ("preset", "pacing", "turns", "tokens", "stagger", "pause", "repeats", "alone")
        },
        "rows": rows,
    }
    if 1 in by_count and 8 in by_count:
        speedup = by_count[8]["tokens_per_s"] / by_count[1]["tokens_per_s"]
        growth = by_count[8]["ttft_ms_p95"] / by_count[1]["ttft_ms_p95"]
        report["targets"] = {
            "tokens_per_s_8_over_1": {"value": speedup, "target": f">= {TARGET_SPEEDUP}", "met": speedup >= 4.0},
            "ttft_p95_8_over_1": {"value": growth, "target": f"<= {TARGET_TTFT_GROWTH}", "met": growth <= 3.0},
        }
    return report


def plot(report: dict[str, Any], path: Path) -> None:
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = report["rows"]
    counts = [row["conversations"] for row in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(counts, [row["tokens_per_s"] for row in rows], "o-")
    left.set_xscale("log", base=2)
    left.set_xticks(counts, [str(c) for c in counts])
    left.set_xlabel("conversations at once")
    left.set_ylabel("output tokens/s, all conversations")
    right.plot(counts, [row["ttft_ms_p50"] for row in rows], "o-", label="TTFT p50")
    right.plot(counts, [row["ttft_ms_p95"] for row in rows], "o-", label="TTFT p95")
    right.plot(counts, [row["longest_gap_ms"] for row in rows], "o--", label="longest gap between deltas")
    right.set_xscale("log", base=2)
    right.set_xticks(counts, [str(c) for c in counts])
    right.set_xlabel("conversations at once")
    right.set_ylabel("ms")
    right.legend()
    for axes in (left, right):
        axes.grid(True, alpha=0.3)
    config = report["config"]
    low, high = config["pause"]
    pauses = f", users pausing {low:g}-{high:g} s" if high > 0 else ""
    figure.suptitle(
        f"{config['preset']} preset, CPU float32, {config['tokens']} tokens a reply, {config['pacing']} pacing{pauses}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(count) for count in args.counts.split(",")]
    async with aural_serve(args.preset) as url:
        warm_up = argparse.Namespace(**{**vars(args), "turns": 1, "pacing": "saturated", "alone": 1})
        await run_count(url, args.preset, 1, warm_up)  # first-use costs of every layer
        samples: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
        for _ in range(args.repeats):  # the counts in turn, so that drifting machine speed hits all alike
            for count in counts:
                samples[count].append(await run_count(url, args.preset, count, args))
    rows = []
    for count in counts:
        runs = samples[count]
        rows.append({key: statistics.median(run[key] for run in runs) for key in runs[0]} | {"conversations": count})
    return summarize(args, rows)


def pause_range(text: str) -> tuple[float, float]:
    """`LO,HI` seconds, 0 <= LO <= HI."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI in seconds, got {text!r}") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"expected 0 <= LO <= HI, got {text!r}")
    return low, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--counts", default="1,2,4,8,16")
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=48, help="max output tokens per reply")
    parser.add_argument("--stagger", type=float, default=0.25, help="seconds between the clients' starts")
    parser.add_argument("--pacing", choices=["vad", "speech", "saturated"], default="vad")
    parser.add_argument(
        "--pause", type=pause_range, default=(0.0, 0.0), help="LO,HI: seconds a user waits before each later turn"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--alone", type=int, default=8, help="the `1` row: this many conversations, each alone, one after another"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    if args.pacing == "saturated" and args.pause[1] > 0:
        parser.error("--pause applies to the vad and speech pacings (saturated sends each turn at once)")
    configure_logging("warning")
    report = asyncio.run(benchmark(args))
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"concurrency_{args.pacing}" + ("_paused" if args.pause[1] > 0 else "")
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / f"{name}.png")
    print(f"{'N':>3} {'tokens/s':>9} {'TTFT p50':>9} {'TTFT p95':>9} {'interval':>9} {'longest gap':>12}")
    for row in report["rows"]:
        print(
            f"{row['conversations']:>3} {row['tokens_per_s']:>9.1f} {row['ttft_ms_p50']:>8.0f}ms "
            f"{row['ttft_ms_p95']:>8.0f}ms {row['delta_interval_ms_p50'] or 0:>7.1f}ms "
            f"{row['longest_gap_ms'] or 0:>10.0f}ms"
        )
    for name, target in report.get("targets", {}).items():
        print(f"{name}: {target['value']:.2f} (target {target['target']}): {'met' if target['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
