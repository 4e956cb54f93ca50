"""Where one decode step's time goes: the model's forward, the LM head, sampling, and the host.

On a session whose cache holds `--context` tokens, times (medians of `--steps` steps, device
synchronised around each):

- forward: `language_model(inputs_embeds, cache)` for one token, the cache cropped back after each;
- forward + head: the same plus the LM head, as `TransformersSession.feed` does;
- engine step: `feed` plus the engine's sampling (suppressed ids, greedy argmax to a Python int);
- host time of the forward: the same call without synchronising, which measures how long the host
  takes to issue it (when it is close to the synchronised time, the step is bound by the host, not
  by the device).

Run on the GPU machine with `bash bench/gpu_run.sh` (it runs this too), or here with `--preset medium`.

    python -m bench.decode_step [--preset 7b-random] [--context 1024] [--steps 30] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from aural.runtime.engine.qwen2_audio.chat_format import Rendered
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine, TransformersSession
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="7b-random")
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    configure_logging("warning")
    engine = TransformersEngine.load(args.preset)
    model, device = engine.model, engine.model.device
    session = TransformersSession(engine)
    rendered = Rendered()
    rendered.add_ids(torch.randint(0, 128, (args.context,), generator=torch.Generator().manual_seed(0)).tolist())
    with torch.inference_mode():
        session.extend(rendered)
        assert session.cache is not None
        cache = session.cache
        embeds = model.get_input_embeddings()(torch.tensor([[65]], device=device))

        def forward() -> object:
            out = model.model.language_model(inputs_embeds=embeds, cache=cache, use_cache=True)
            cache.crop(-1)
            return out

        def forward_head() -> object:
            logits = session._forward(embeds)
            cache.crop(-1)
            return logits

        def engine_step() -> object:
            logits = session.feed([65])
            logits[engine.suppressed] = float("-inf")
            token = int(torch.argmax(logits))
            cache.crop(-1)
            session.keys.pop()
            return token

        report = {
            "preset": args.preset,
            "device": str(device),
            "dtype": str(model.dtype),
            "context": args.context,
            "forward_ms": timed(forward, args.steps, True, device),
            "forward_head_ms": timed(forward_head, args.steps, True, device),
            "engine_step_ms": timed(engine_step, args.steps, True, device),
            "forward_host_ms": timed(forward, args.steps, False, device),
        }
    for key, value in report.items():
        print(f"{key:>16}: {value:.2f}" if isinstance(value, float) else f"{key:>16}: {value}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
