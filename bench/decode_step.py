"""Where one decode step's time goes, eager against a CUDA graph, by batch width.

On `--rows` caches of `--context` positions each (in the engine's pool), times (medians of `--steps`
steps, the device synchronised around each, the caches cropped back after each):

- eager: `ModelRunner.step` of decode rows with CUDA graphs off (the model's forward over the pool, the head);
- graph: the same with a captured graph replayed (CUDA only);
- eager, host: the eager step without synchronising, which measures how long the host takes to issue
  it (when it is close to the synchronised time, the step is bound by the host, not by the device).

Run on the GPU machine with `bash bench/gpu_run.sh` (it runs this too), or here with `--preset medium`.

    python -m bench.decode_step [--preset 7b-random] [--context 1024] [--rows 1 8 32] [--steps 30] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aural.runtime.engine.batching.kv_pool import SequenceCache
from aural.runtime.engine.batching.runner import Chunk
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.logs import configure_logging


def timed(fn: Callable[[], object], steps: int, sync: bool, device: torch.device) -> float:
    """Median milliseconds of `fn` over `steps` calls, after two warm-ups."""
    runs = []
    for index in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if sync and device.type == "cuda":
            torch.cuda.synchronize()
        if index >= 2:
            runs.append(1000 * (time.perf_counter() - start))
    return statistics.median(runs)


@torch.inference_mode()
def measure(engine: TransformersEngine, rows: int, context: int, steps: int) -> dict[str, Any]:
    pool, runner, device = engine.pool, engine.runner, engine.device
    ids = torch.randint(0, 128, (context,), generator=torch.Generator().manual_seed(0)).tolist()
    caches = []
    for _ in range(rows):
        cache = SequenceCache()
        pool.ensure(cache, context + 1)
        runner.step([], [], [Chunk(cache, 0, runner.embed(ids))])
        cache.keys.extend(ids)
        caches.append(cache)
    tokens = [65] * rows

    def step() -> object:
        logits, _ = runner.step(tokens, caches)
        assert logits is not None
        return logits.argmax(dim=-1).tolist()  # a host copy, as sampling makes

    graphs = runner.graphs
    result: dict[str, Any] = {"rows": rows, "context": context}
    if graphs is not None:
        graphs.enabled = False
    result["eager_ms"] = timed(step, steps, True, device)
    result["eager_host_ms"] = timed(lambda: runner.step(tokens, caches), steps, False, device)
    if graphs is not None:
        graphs.enabled = True
        result["graph_ms"] = timed(step, steps, True, device)
        result["graphs_still_enabled"] = graphs.enabled  # False if the capture or its check failed
    for cache in caches:
        pool.clear(cache)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="7b-random")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--rows", type=int, nargs="*", default=[1, 8, 32])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    configure_logging("warning")
    engine = TransformersEngine.load(args.preset)
    report: dict[str, Any] = {"preset": args.preset, "device": str(engine.device), "dtype": str(engine.model.dtype)}
    try:
        # The device loop is idle (no session is open): the steps run on this thread.
        report["steps"] = [measure(engine, rows, args.context, args.steps) for rows in args.rows]
    finally:
        engine.shutdown()
    for row in report["steps"]:
        print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
