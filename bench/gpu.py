"""One-shot GPU benchmark: Qwen2-Audio-7B's geometry (random bf16 weights) through the engine, in-process.

Timings depend on the geometry, not on the weights, so `7b-random` measures the real size with nothing
downloaded. Sized for well under 5 minutes on an H100, it measures, and writes to `--out` as JSON after every
section (a run cut short still leaves what it measured):

- load: building the model in place on the device; GPU memory after it; KV-cache bytes per token;
- turns: the benchmark conversation (`bench/conversation.py`: 2 s of speech-like audio and a short
  instruction per turn, `--tokens` per reply) on one engine session: TTFT per turn and decode ms per
  token, medians over `--repeats` runs after a warm-up; the naive reference (`generate()` over the whole
  history) at `--naive-turns`;
- the audio encoder on a 30 s clip; the prefill of 750 new tokens (a 30 s clip's worth) on an empty cache.

Many conversations at once are `bench.fleet`'s; `bench/gpu_run.sh` runs both.

Random weights would end replies at random lengths (a sampled `<|im_end|>`) and hold text back (bytes
that open a multi-byte character), so every generation here may only emit single-byte ASCII tokens:
each reply has exactly its token budget and each token is its own delta. The naive reference runs with
the engine's own three suppressed audio markers, as a plain `generate()` call would.

    python -m bench.gpu --out gpu.json                          # on the GPU (see bench/gpu_run.sh)
    python -m bench.gpu --preset medium --repeats 1 --out x.json  # the same script on a CPU, quickly
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import torch
import transformers

from aural.runtime.engine.base import Message
from aural.runtime.engine.batching.kv_pool import SequenceCache
from aural.runtime.engine.batching.runner import Chunk
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.logs import configure_logging
from bench.conversation import (
    DirectConversation,
    Reply,
    conversation_turns,
    median,
    run_naive,
    speech_like,
)

GIB = 2**30


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(device: torch.device, fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds per call of `fn` after one untimed warm-up call, the device synchronized around each."""
    fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(1000 * (time.perf_counter() - start))
    return times


@contextmanager
def suppressing(engine: TransformersEngine, ids: torch.Tensor) -> Iterator[None]:
    """Sample with `ids` suppressed instead of the engine's own set."""
    saved, engine.suppressed = engine.suppressed, ids
    try:
        yield
    finally:
        engine.suppressed = saved


def non_ascii_ids(engine: TransformersEngine) -> torch.Tensor:
    """Every id of the model's vocabulary but those that decode to one ASCII character."""
    tokenizer = engine.tokenizer
    allowed = torch.ones(engine.model.get_output_embeddings().out_features, dtype=torch.bool)
    for i in range(len(tokenizer)):
        text = tokenizer.decode([i])
        if len(text) == 1 and text.isascii():
            allowed[i] = False
    return allowed.nonzero().squeeze(1).to(engine.model.device)


async def run_conversation(
    engine: TransformersEngine, turns: int, tokens: int
) -> tuple[list[Reply], list[Message], dict[str, list[int]], float]:
    """The benchmark conversation on a fresh session: replies, messages, reply ids, KV bytes per token."""
    session = await engine.open_session()
    direct = DirectConversation(session, tokens)
    replies = [await direct.turn(turn) for turn in conversation_turns(turns)]
    per_token = float(engine.pool.geometry.bytes_per_token)
    generated = {key: list(ids) for key, ids in session.generated.items()}
    await session.close()
    return replies, direct.conversation, generated, per_token


def prefill_fn(engine: TransformersEngine, count: int) -> Callable[[], object]:
    """A call that prefills `count` text tokens into an empty cache, then frees it."""
    ids = torch.randint(0, 128, (count,), generator=torch.Generator().manual_seed(0)).tolist()

    def prefill() -> object:
        cache = SequenceCache()
        engine.pool.ensure(cache, count)
        _, logits = engine.runner.step([], [], [Chunk(cache, 0, engine.runner.embed(ids))])
        engine.pool.clear(cache)
        return logits

    return prefill


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info |= {"gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
    else:
        info |= {"processor": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}
    return info


def memory_gib(device: torch.device) -> dict[str, float] | None:
    if device.type != "cuda":
        return None
    return {
        "allocated": torch.cuda.memory_allocated(device) / GIB,
        "reserved": torch.cuda.memory_reserved(device) / GIB,
        "peak_allocated": torch.cuda.max_memory_allocated(device) / GIB,
    }


def turn_rows(runs: Sequence[list[Reply]], naive: Sequence[list[float]], naive_turns: Sequence[int]) -> list[Any]:
    rows = []
    for k in range(len(runs[0])):
        first = runs[0][k]
        row = {
            "turn": k + 1,
            "input_tokens": first.input_tokens,
            "cached_tokens": first.cached_tokens,
            "output_tokens": first.output_tokens,
            "ttft_ms": 1000 * median([run[k].ttft_s for run in runs]),
            "ttft_ms_runs": [1000 * run[k].ttft_s for run in runs],
            "decode_ms_per_token": 1000 * median([run[k].interval_s for run in runs]),
            "ttft_ms_naive": None,
        }
        if k + 1 in naive_turns:  # run_naive lists the turns in order
            at = sorted(t for t in set(naive_turns) if t <= len(runs[0])).index(k + 1)
            row["ttft_ms_naive"] = 1000 * median([times[at] for times in naive])
        rows.append(row)
    return rows


async def benchmark(args: argparse.Namespace, report: dict[str, Any], save: Callable[[], None]) -> None:
    """Fill `report` section by section, calling `save` after each."""
    began = time.perf_counter()
    start = time.perf_counter()
    engine = await asyncio.to_thread(TransformersEngine.load, args.preset, device=args.device, dtype=args.dtype)
    device = engine.model.device
    synchronize(device)
    report["machine"] = machine(device)
    report["config"] = {k: v for k, v in vars(args).items() if k != "out"} | {"dtype": str(engine.model.dtype)}
    report["load"] = {
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in engine.model.parameters()),
        "memory_gib": memory_gib(device),
    }
    save()
    print(f"loaded {args.preset} on {device} in {report['load']['seconds']:.1f} s", flush=True)
    try:
        with suppressing(engine, non_ascii_ids(engine)):
            await run_conversation(engine, 2, args.tokens)  # warm-up: first-use costs of every layer
            runs, naive = [], []
            for _ in range(args.repeats):
                replies, messages, generated, per_token = await run_conversation(engine, args.turns, args.tokens)
                runs.append(replies)
                with suppressing(engine, torch.tensor(engine.chat_format.suppressed_ids)):
                    naive.append(await run_naive(engine, messages, generated, args.naive_turns))
        report["kv_bytes_per_token"] = per_token
        report["turns"] = turn_rows(runs, naive, args.naive_turns)
        report["decode_ms_per_token"] = 1000 * median([reply.interval_s for run in runs for reply in run])
        save()
        print("conversation done", flush=True)

        clip = speech_like(7, seconds=30.0)
        calls = args.repeats + 2
        encoder = await engine.scheduler.call(partial(timed_ms, device, partial(engine.encoder.encode, clip), calls))
        prefill = await engine.scheduler.call(partial(timed_ms, device, prefill_fn(engine, 750), calls))
        report["audio_encoder_30s_ms"] = {"median": median(encoder), "runs": encoder}
        report["prefill_750_tokens_ms"] = {"median": median(prefill), "runs": prefill}
        report["memory_gib_end"] = memory_gib(device)
        report["total_seconds"] = time.perf_counter() - began
        save()
    finally:
        await engine.close()


def print_summary(report: dict[str, Any]) -> None:
    load = report["load"]
    memory = load["memory_gib"]
    print(f"\n{report['machine']}")
    print(
        f"load {load['seconds']:.1f} s, {load['parameters'] / 1e9:.2f}B parameters"
        + (f", {memory['allocated']:.1f} GiB allocated" if memory else "")
        + f"; KV cache {report['kv_bytes_per_token'] / 1024:.0f} KiB/token"
    )
    print(f"{'turn':>4} {'input':>6} {'cached':>6} {'TTFT ms':>8} {'decode':>7} {'naive ms':>9}")
    for t in report["turns"]:
        naive = f"{t['ttft_ms_naive']:>9.1f}" if t["ttft_ms_naive"] is not None else f"{'':>9}"
        print(
            f"{t['turn']:>4} {t['input_tokens']:>6} {t['cached_tokens']:>6} {t['ttft_ms']:>8.1f} "
            f"{t['decode_ms_per_token']:>7.2f} {naive}"
        )
    print(f"decode {report['decode_ms_per_token']:.2f} ms/token (median over all replies)")
    print(
        f"audio encoder, 30 s clip: {report['audio_encoder_30s_ms']['median']:.1f} ms; "
        f"prefill of 750 tokens: {report['prefill_750_tokens_ms']['median']:.1f} ms"
    )
    print(f"total {report['total_seconds']:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="7b-random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 on CUDA, float32 on the CPU")
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=16, help="tokens per reply")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the conversation; timed calls get 2 more")
    parser.add_argument("--naive-turns", type=int, nargs="*", default=[1, 5, 10])
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    args = parser.parse_args()
    configure_logging("warning")
    report: dict[str, Any] = {}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    asyncio.run(benchmark(args, report, save))
    print_summary(report)


if __name__ == "__main__":
    main()
