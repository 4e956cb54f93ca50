"""Long-utterance benchmark: does the wait after speech end grow with the length of what was said?

One user turn of espeak-ng speech (phrases joined by short pauses, cut to 5, 15, 30 and 60 s) goes to
an in-process `EngineSession` of a built-in preset (float32 on the CPU), two ways:

- plain: `generate()` right after the utterance; time to first token (TTFT) covers encoding every
  clip and prefilling every token of the turn.
- speculative: the schedule the conversation layer follows. While the user talks, a `prefill()`
  of the conversation with the partial message (the completed 30 s clips so far) at each clip that
  completes before the utterance ends (untimed: it runs during speech, its time is reported); at
  speech end (when the VAD sees silence begin) a `prefill()` of the whole turn, timed: it must fit in
  the 500 ms of silence before `speech_stopped`; then `generate()`, whose TTFT is timed.

Every run uses fresh sessions; figures are medians over `--repeats` runs after a warm-up. The reply
is one token (`max_tokens=1`), so the first delta always holds exactly the first token.

The built-in presets have random weights; the timings depend on the geometry, not on the weights.

    python bench/long_audio.py [--preset medium] [--seconds 5 15 30 60] [--repeats 5] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from aural.runtime.engine.base import SAMPLE_RATE, AudioPart, AudioSamples, GenerationDone, Message, SamplingParams
from aural.runtime.engine.qwen2_audio.chat_format import CLIP_SAMPLES
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine, TransformersSession
from aural.runtime.logs import configure_logging

PHRASES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please tell me what you think about the weather today.",
    "I would like to book a table for two at eight o'clock.",
    "Could you summarize the main points of the meeting?",
)
PAUSE_S = 0.3
SILENCE_WINDOW_MS = 500.0  # silence before the VAD's speech_stopped: the speech-end prefill must fit in it
TARGET_SPREAD = 1.2  # speculative TTFT: longest utterance's at most this many times the shortest's


@dataclass(frozen=True)
class Timing:
    """One speculative run: the untimed clip prefills, the speech-end prefill and the reply."""

    clip_prefills_ms: list[float]
    speech_end_prefill_ms: float
    ttft_ms: float
    input_tokens: int
    cached_tokens: int
    token: int


def speech(seconds: float) -> AudioSamples:
    """Spoken phrases with short pauses, repeated and cut to exactly `seconds` (needs espeak-ng and PyAV)."""
    from tests.support.speech import speak  # only here: a GPU machine has neither, and gets `--speech FILE` instead

    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    pieces: list[AudioSamples] = []
    needed = int(seconds * SAMPLE_RATE)
    for phrase in itertools.cycle(PHRASES):
        pieces += [speak(phrase), pause]
        if sum(len(p) for p in pieces) >= needed:
            return np.concatenate(pieces)[:needed]
    raise AssertionError("unreachable: the phrases cycle")


def utterances(args: argparse.Namespace) -> dict[float, AudioSamples]:
    """The utterances to time: made with espeak-ng, or cut from `--speech` (16 kHz float32 .npy, made with
    `--save-speech` where espeak-ng is installed)."""
    if args.speech is None:
        return {seconds: speech(seconds) for seconds in args.seconds}
    samples: AudioSamples = np.load(args.speech)
    return {seconds: samples[: int(seconds * SAMPLE_RATE)] for seconds in args.seconds}


def turn(samples: AudioSamples) -> list[Message]:
    """The conversation: one voice turn (the partial one during speech has the same item id)."""
    return [Message("user", (AudioPart("utterance/0", samples),), "utterance")]


async def reply(session: TransformersSession, samples: AudioSamples) -> tuple[float, GenerationDone, int]:
    """Generate one token; return the time to its delta, the usage and the token."""
    start = time.perf_counter()
    first: float | None = None
    done: GenerationDone | None = None
    async for event in session.generate(turn(samples), "reply", SamplingParams(max_tokens=1)):
        if isinstance(event, GenerationDone):
            done = event
        elif first is None:
            first = time.perf_counter()
    assert first is not None and done is not None, "the one-token reply has a delta and an end"
    return 1000 * (first - start), done, session.generated["reply"][0]


async def plain(engine: TransformersEngine, samples: AudioSamples) -> tuple[float, int]:
    session = await engine.open_session()
    ttft, _, token = await reply(session, samples)
    await session.close()
    return ttft, token


async def speculative(engine: TransformersEngine, samples: AudioSamples) -> Timing:
    session = await engine.open_session()
    clips = []
    for end in range(CLIP_SAMPLES, len(samples), CLIP_SAMPLES):  # clips that complete while the user talks
        start = time.perf_counter()
        await session.prefill(turn(samples[:end]))
        clips.append(1000 * (time.perf_counter() - start))
    start = time.perf_counter()
    await session.prefill(turn(samples))
    speech_end = 1000 * (time.perf_counter() - start)
    ttft, done, token = await reply(session, samples)
    await session.close()
    return Timing(clips, speech_end, ttft, done.usage.input_tokens, done.usage.cached_tokens, token)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    engine = TransformersEngine.load(args.preset, device=args.device, dtype=args.dtype)
    spoken = utterances(args)
    try:
        for samples in spoken.values():  # warm-up: first-use costs of every shape
            await plain(engine, samples)
            await speculative(engine, samples)
        plains: dict[float, list[tuple[float, int]]] = {s: [] for s in args.seconds}
        specs: dict[float, list[Timing]] = {s: [] for s in args.seconds}
        for _ in range(args.repeats):
            for seconds, samples in spoken.items():  # alternated, so drifting machine speed hits both alike
                plains[seconds].append(await plain(engine, samples))
                specs[seconds].append(await speculative(engine, samples))
    finally:
        await engine.close()
    return summarize(args, plains, specs)


def summarize(
    args: argparse.Namespace, plains: dict[float, list[tuple[float, int]]], specs: dict[float, list[Timing]]
) -> dict[str, Any]:
    rows = []
    for seconds in args.seconds:
        runs = specs[seconds]
        prefill = statistics.median(t.speech_end_prefill_ms for t in runs)
        ttft = statistics.median(t.ttft_ms for t in runs)
        clip_prefills = [statistics.median(column) for column in zip(*(t.clip_prefills_ms for t in runs), strict=True)]
        rows.append(
            {
                "seconds": seconds,
                "input_tokens": runs[0].input_tokens,
                "plain_ttft_ms": statistics.median(p[0] for p in plains[seconds]),
                "speculative": {
                    "clip_prefills_ms_while_talking": clip_prefills,
                    "speech_end_prefill_ms": prefill,
                    "ttft_ms": ttft,
                    "speech_end_to_first_token_ms": prefill + ttft,
                    "cached_tokens": runs[0].cached_tokens,
                },
                "same_first_token": all(p[1] == t.token for p, t in zip(plains[seconds], runs, strict=True)),
                "speech_end_prefill_fits_silence_window": prefill <= SILENCE_WINDOW_MS,
            }
        )
    ttfts = [row["speculative"]["ttft_ms"] for row in rows]
    spread = max(ttfts) / min(ttfts)
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_1min": os.getloadavg()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "config": {"preset": args.preset, "device": args.device, "dtype": args.dtype, "repeats": args.repeats},
        "utterances": rows,
        "targets": {
            "speculative_ttft_spread": {
                "value": spread,
                "target": f"<= {TARGET_SPREAD:g}",
                "met": spread <= TARGET_SPREAD,
            },
            "speech_end_prefill_ms_max": {
                "value": max(row["speculative"]["speech_end_prefill_ms"] for row in rows),
                "target": f"<= {SILENCE_WINDOW_MS:g}",
                "met": all(row["speech_end_prefill_fits_silence_window"] for row in rows),
            },
        },
    }


def print_summary(report: dict[str, Any]) -> None:
    header = ("audio s", "tokens", "plain TTFT", "end prefill", "spec TTFT", "end→token", "cached")
    print(" ".join(f"{name:>11}" for name in header))
    for row in report["utterances"]:
        spec = row["speculative"]
        values: Sequence[float] = (
            row["seconds"],
            row["input_tokens"],
            row["plain_ttft_ms"],
            spec["speech_end_prefill_ms"],
            spec["ttft_ms"],
            spec["speech_end_to_first_token_ms"],
            spec["cached_tokens"],
        )
        print(" ".join(f"{value:>11.1f}" for value in values))
    for name, target in report["targets"].items():
        print(f"{name}: {target['value']:.2f} (target {target['target']}): {'met' if target['met'] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 15.0, 30.0, 60.0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="auto: CUDA when present")
    parser.add_argument("--dtype", default="float32", help="auto: bfloat16 on CUDA")
    parser.add_argument("--speech", type=Path, help="take the utterances from this .npy instead of espeak-ng")
    parser.add_argument("--save-speech", type=Path, help="write the longest utterance to this .npy and stop")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    if args.save_speech:
        np.save(args.save_speech, speech(max(args.seconds)))
        return
    configure_logging("warning")
    report = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long_audio.json").write_text(json.dumps(report, indent=2) + "\n")
    print_summary(report)


if __name__ == "__main__":
    main()
