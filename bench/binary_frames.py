"""What binary audio frames save over base64 JSON appends.

With the `aural.binary-audio` subprotocol a client sends input audio as raw binary websocket messages
instead of `input_audio_buffer.append` events. Measured for GA PCM16 at 24 kHz in 20 ms chunks:

- bytes on the wire per second of audio;
- CPU per second of audio to make and to read the frames (client: base64 + JSON; server: the strict
  event decoding and base64 decoding it does for every append), in process;
- wall time to push 60 s of audio through the real server (`aural serve` in its own process) until
  `input_audio_buffer.committed`, both ways, interleaved.

    python -m bench.binary_frames [--seconds 60] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from aural.protocols import decode_client_event
from bench.conversation import median
from bench.local_server import aural_serve

RATE = 24000
CHUNK = 2 * RATE // 50  # 20 ms of PCM16


def chunks(seconds: float) -> list[bytes]:
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(int(seconds * RATE)) * 3000).astype("<i2").tobytes()
    return [pcm[i : i + CHUNK] for i in range(0, len(pcm), CHUNK)]


def as_event(chunk: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(chunk).decode()})


def cpu_costs(repeats: int) -> dict[str, float]:
    """Microseconds of CPU per second of audio, medians over `repeats`."""
    second = chunks(1.0)
    encode, decode = [], []
    for _ in range(repeats):
        started = time.process_time()
        frames = [as_event(c) for c in second]
        encode.append(time.process_time() - started)
        started = time.process_time()
        for frame in frames:
            event = decode_client_event(frame)
            base64.b64decode(event.audio, validate=True)  # type: ignore[union-attr]
        decode.append(time.process_time() - started)
    return {"client_encode_us": 1e6 * median(encode), "server_decode_us": 1e6 * median(decode)}


async def push(url: str, frames: list[bytes], binary: bool) -> float:
    """Seconds from the first frame to `input_audio_buffer.committed`."""
    options: dict[str, Any] = {"subprotocols": ["aural.binary-audio"]} if binary else {}
    async with websockets.connect(url, max_size=None, **options) as ws:
        await ws.recv()  # session.created
        started = time.perf_counter()
        for frame in frames:
            await ws.send(frame if binary else as_event(frame))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        while json.loads(await ws.recv())["type"] != "input_audio_buffer.committed":
            pass
        return time.perf_counter() - started


async def run(args: argparse.Namespace) -> dict[str, Any]:
    frames = chunks(args.seconds)
    second = chunks(1.0)
    wire = {
        "json_bytes_per_s": sum(len(as_event(c).encode()) for c in second),
        "binary_bytes_per_s": sum(len(c) for c in second),
    }
    times: dict[str, list[float]] = {"json": [], "binary": []}
    async with aural_serve("tiny") as url:
        await push(url, frames[:50], binary=False)  # warm up
        for _ in range(args.repeats):
            times["json"].append(await push(url, frames, binary=False))
            times["binary"].append(await push(url, frames, binary=True))
    json_s, binary_s = median(times["json"]), median(times["binary"])
    return {
        "seconds_of_audio": args.seconds,
        "repeats": args.repeats,
        **wire,
        "wire_saving": 1 - wire["binary_bytes_per_s"] / wire["json_bytes_per_s"],
        **cpu_costs(args.repeats * 10),
        "push_json_s": json_s,
        "push_binary_s": binary_s,
        "push_speedup": json_s / binary_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    report = asyncio.run(run(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "binary_frames.json").write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:>22}: {value:.3f}" if isinstance(value, float) else f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
