"""End of speech → first token, for utterances of 5 to 60 s, through the real server with server VAD.

Each run opens a fresh conversation with `aural serve` (its own process, on a loopback port), turns on
server VAD (silence 500 ms), streams espeak-ng speech of the given length (phrases with 0.2 s pauses,
one turn) as GA PCM16 at 24 kHz, `--pace` times faster than real time, then 1.5 s of silence in real
time (the runtime's speculative prefill works during the silence before `speech_stopped`, so that part
must take its real time), and times from `input_audio_buffer.speech_stopped` to the first
`response.output_text.delta`. While the user talks the
runtime prefills each completed 30 s clip, and when silence begins it prefills the whole turn, so this
should not grow with the utterance's length (target: within 20% across lengths).

For comparison, `manual` sends the same audio without VAD and times from `input_audio_buffer.commit` +
`response.create` to the first delta: nothing was read ahead, so it grows with the length.

    python -m bench.turn_latency [--preset medium] [--lengths 5 15 30 60] [--repeats 3] [--pace 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import websockets

from bench.conversation import median
from bench.local_server import aural_serve
from tests.support.speech import speak

RATE = 24000
CHUNK_MS = 20
PHRASES = (
    "I would like to book a table for four people tomorrow evening.",
    "Somewhere quiet, near the river, if that is possible.",
    "We will probably arrive at around half past seven.",
    "One of us is vegetarian, so please keep that in mind.",
)
TARGET_SPREAD = 1.2


def speech(seconds: float) -> npt.NDArray[np.float32]:
    """At least `seconds` of speech, as one turn: phrases joined by 0.2 s pauses."""
    pause = np.zeros(int(0.2 * RATE), np.float32)
    pieces: list[npt.NDArray[np.float32]] = []
    index = 0
    while sum(p.size for p in pieces) < seconds * RATE:
        pieces += [speak(PHRASES[index % len(PHRASES)], rate=RATE), pause]
        index += 1
    return np.concatenate(pieces)[: int(seconds * RATE)]


def pcm16(samples: npt.NDArray[np.float32]) -> bytes:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def send_audio(ws: Any, pcm: bytes, pace: float) -> None:
    """Append `pcm` in 20 ms chunks, `pace` times faster than real time."""
    step = 2 * RATE * CHUNK_MS // 1000
    started = time.perf_counter()
    for index, start in enumerate(range(0, len(pcm), step)):
        chunk = base64.b64encode(pcm[start : start + step]).decode()
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
        ahead = started + (index + 1) * CHUNK_MS / 1000 / pace - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)


async def send_speech_then_silence(ws: Any, speech: bytes, pace: float, silence: bytes) -> None:
    await send_audio(ws, speech, pace)
    await send_audio(ws, silence, 1.0)


async def until(ws: Any, event_type: str) -> float:
    """Read events until one of `event_type`; returns when it arrived."""
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == "error":
            raise RuntimeError(event["error"]["message"])
        if event["type"] == event_type:
            return time.perf_counter()


async def one_turn(url: str, audio: npt.NDArray[np.float32], mode: str, pace: float) -> float:
    async with websockets.connect(url, max_size=None) as ws:
        await until(ws, "session.created")
        detection = {"type": "server_vad", "silence_duration_ms": 500} if mode == "vad" else None
        update = {"type": "realtime", "max_output_tokens": 8, "audio": {"input": {"turn_detection": detection}}}
        await ws.send(json.dumps({"type": "session.update", "session": update}))
        await until(ws, "session.updated")
        if mode == "vad":
            silence = pcm16(np.zeros(int(1.5 * RATE), np.float32))
            sender = asyncio.create_task(send_speech_then_silence(ws, pcm16(audio), pace, silence))
            stopped = await until(ws, "input_audio_buffer.speech_stopped")
            first = await until(ws, "response.output_text.delta")
            await sender
            return first - stopped
        await send_audio(ws, pcm16(audio), pace)
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        await until(ws, "conversation.item.done")  # the server has decoded the audio
        asked = time.perf_counter()
        await ws.send(json.dumps({"type": "response.create"}))
        return await until(ws, "response.output_text.delta") - asked


async def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with aural_serve(args.preset) as url:
        await one_turn(url, speech(2), "vad", args.pace)  # warm up
        for seconds in args.lengths:
            audio = speech(seconds)
            row: dict[str, list[float]] = {"vad": [], "manual": []}
            for _ in range(args.repeats):
                for mode in ("vad", "manual"):  # interleaved, so that both see the same machine
                    row[mode].append(await one_turn(url, audio, mode, args.pace))
            medians = {mode: 1000 * median(runs) for mode, runs in row.items()}
            results[str(seconds)] = {
                mode: {"median_ms": medians[mode], "runs_ms": [1000 * x for x in runs]} for mode, runs in row.items()
            }
            print(
                f"{seconds:>3} s: speech_stopped→first delta {medians['vad']:7.1f} ms, "
                f"commit→first delta without VAD {medians['manual']:7.1f} ms",
                flush=True,
            )
    vad = [results[str(s)]["vad"]["median_ms"] for s in args.lengths]
    return {
        "preset": args.preset,
        "pace": args.pace,
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
        "lengths_s": args.lengths,
        "results": results,
        "spread": max(vad) / min(vad),
        "target_spread": TARGET_SPREAD,
        "target_met": max(vad) / min(vad) <= TARGET_SPREAD,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--lengths", type=int, nargs="+", default=[5, 15, 30, 60])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pace", type=float, default=2.0, help="speech streamed this many times faster than real time")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    report = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turn_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"spread {report['spread']:.2f}x (target ≤ {TARGET_SPREAD}x): {'met' if report['target_met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
