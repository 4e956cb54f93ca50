"""Voice activity detection cost: CPU time per 20 ms frame and per 512-sample window.

`aural.runtime.audio.vad` (silero-vad's ONNX model, one onnxruntime thread) is fed seeded noise (the
model's cost does not depend on what it hears):

- one stream, in 20 ms frames (320 samples: 5 of 8 frames complete a window) and in whole windows;
- many streams interleaved frame by frame through one loaded model, in one thread, as a worker thread
  serving many conversations would call it;
- the same streams split over two threads (this machine's cores), as the driver's worker threads would;
- silero-vad's own TorchScript model on one stream, the alternative the ONNX model was chosen over.

Every figure is a median over `--repeats` runs of `--seconds` of audio per stream; per-frame figures are
the run's time divided by its frames (amortised: a frame that completes no window costs next to nothing).

    python bench/vad.py [--seconds 10] [--repeats 7] [--streams 1 8 32 128] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import torch

from aural.runtime.audio.vad import WINDOW_SAMPLES, SileroVad, VadStream
from aural.runtime.engine.base import SAMPLE_RATE, AudioSamples

FRAME_SAMPLES = SAMPLE_RATE // 50  # 20 ms


def noise(seed: int, seconds: float) -> AudioSamples:
    samples: AudioSamples = np.random.default_rng(seed).normal(0.0, 0.03, int(seconds * SAMPLE_RATE)).astype(np.float32)
    return samples


def frames(samples: AudioSamples, size: int) -> list[AudioSamples]:
    return [samples[start : start + size] for start in range(0, len(samples) - size + 1, size)]


def median_ms(run: Callable[[], int], repeats: int) -> float:
    """Median over `repeats` of (wall time of `run`) / (the count it returns), in ms."""
    costs = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = run()
        costs.append((time.perf_counter() - start) / count * 1e3)
    return statistics.median(costs)


def interleaved(streams: Sequence[VadStream], audio: Sequence[list[AudioSamples]]) -> int:
    """Feed every stream its next frame in turn; returns the frames fed."""
    for step in range(len(audio[0])):
        for stream, chunks in zip(streams, audio, strict=True):
            stream.probabilities(chunks[step])
    return len(streams) * len(audio[0])


def in_threads(vad: SileroVad, audio: Sequence[list[AudioSamples]], threads: int) -> int:
    """The streams split over `threads` threads, each interleaving its share; returns the frames fed."""
    workers = [
        threading.Thread(target=interleaved, args=([vad.stream() for _ in audio[i::threads]], audio[i::threads]))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(audio) * len(audio[0])


def torchscript_window_ms(samples: AudioSamples, repeats: int) -> float:
    """silero-vad's TorchScript model, window by window on one stream, on one torch thread like the ONNX
    model (importing silero_vad sets that for the whole process; the setting is restored after)."""
    threads = torch.get_num_threads()
    from silero_vad import load_silero_vad  # type: ignore[import-untyped]

    model = load_silero_vad()
    windows = [torch.from_numpy(w) for w in frames(samples, WINDOW_SAMPLES)]

    def run() -> int:
        model.reset_states()
        with torch.no_grad():
            for window in windows:
                model(window, SAMPLE_RATE)
        return len(windows)

    try:
        return median_ms(run, repeats)
    finally:
        torch.set_num_threads(threads)


def interleaved_entry(vad: SileroVad, framed: list[list[AudioSamples]], repeats: int) -> dict[str, float | int]:
    """Costs for these streams, interleaved in one thread and split over two."""
    frame_ms = median_ms(lambda: interleaved([vad.stream() for _ in framed], framed), repeats)
    entry: dict[str, float | int] = {
        "streams": len(framed),
        "frame_ms": frame_ms,
        "ms_per_audio_second": frame_ms * 50,
    }
    if len(framed) > 1:
        entry["frame_ms_two_threads_wall"] = median_ms(lambda: in_threads(vad, framed, 2), repeats)
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per stream")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]  # other processes' load skews every figure
    vad = SileroVad.load()
    audio = [noise(seed, args.seconds) for seed in range(max(args.streams))]
    framed = [frames(samples, FRAME_SAMPLES) for samples in audio]
    windows = [frames(audio[0], WINDOW_SAMPLES)]
    one_stream = {
        "frame_ms": median_ms(lambda: interleaved([vad.stream()], framed[:1]), args.repeats),
        "window_ms": median_ms(lambda: interleaved([vad.stream()], windows), args.repeats),
        "torchscript_window_ms": torchscript_window_ms(audio[0], args.repeats),
    }
    print(json.dumps(one_stream))
    entries = []
    for count in args.streams:
        entries.append(interleaved_entry(vad, framed[:count], args.repeats))
        print(json.dumps(entries[-1]))
    report = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "load_average_1min_at_start_and_end": [load_at_start, os.getloadavg()[0]],
        },
        "config": {"seconds_per_stream": args.seconds, "repeats": args.repeats, "frame_samples": FRAME_SAMPLES},
        "one_stream": one_stream,
        "interleaved": entries,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vad.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
