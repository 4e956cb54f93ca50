"""Input codec benchmark: CPU cost of decoding + resampling each input format, per second of audio.

A spoken utterance (examples/sample.wav, repeated to `--seconds`) is encoded in every format Aural
accepts, with PyAV's encoders, then decoded by the runtime's own decoder (`make_decoder`) fed in chunks
of about 20 ms of the stream, as a live client sends them. CPU time (`time.process_time`, which counts
the decoder threads) is measured from the first chunk through `flush()`; medians over `--repeats` runs.

The encoder table (`STREAMS`, `encode`) is the codec tests' own, in `tests.support.codecs`.

    python bench/codecs.py [--seconds 10] [--repeats 7] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import av
import numpy as np

from aural.runtime.audio.decoders import make_decoder
from aural.sdk.audio import read_audio_file
from tests.support.codecs import STREAMS, Pcm16, Stream, chunks, encode, stereo

SAMPLE_WAV = Path(__file__).resolve().parent.parent / "examples" / "sample.wav"


def speech(rate: int, seconds: float | None = None) -> Pcm16:
    """examples/sample.wav as PCM16 mono at `rate`, repeated to `seconds` when given."""
    pcm = np.frombuffer(read_audio_file(SAMPLE_WAV, rate=rate), dtype="<i2")
    if seconds is not None:
        pcm = np.resize(pcm, int(seconds * rate))
    return pcm.astype(np.int16)


def source(stream: Stream, seconds: float | None = None) -> Pcm16:
    """The speech a stream is made from, in its rate and channels."""
    pcm = speech(stream.rate, seconds)
    return stereo(pcm) if stream.channels == 2 else pcm


def cpu_seconds(stream: Stream, pieces: list[bytes]) -> float:
    """CPU time of one decode of `pieces`, from the first chunk through `flush()`."""
    decoder = make_decoder(stream.format)
    start = time.process_time()
    for piece in pieces:
        decoder.feed(piece)
    decoder.flush()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    results = {}
    for name, stream in STREAMS.items():
        data = encode(source(stream, args.seconds), stream)
        pieces = chunks(data, args.seconds)
        runs = [cpu_seconds(stream, pieces) for _ in range(args.repeats)]
        ms_per_second = 1000 * statistics.median(runs) / args.seconds
        results[name] = {
            "format": stream.format.model_dump(exclude_none=True),
            "source_rate": stream.rate,
            "channels": stream.channels,
            "bytes_per_second": round(len(data) / args.seconds),
            "chunk_bytes": len(pieces[0]),
            "cpu_ms_per_audio_second": round(ms_per_second, 3),
        }
        print(f"{name:24} {ms_per_second:7.2f} ms CPU per second of audio ({len(pieces[0])} B chunks)")
    report = {
        "benchmark": "input audio decode + resample to 16 kHz mono, fed in ~20 ms chunks",
        "seconds": args.seconds,
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "pyav": av.__version__},
        "codecs": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "codecs.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
