"""The fleet on one device, in process: batch-1 decode against the weights' bandwidth floor, many
conversations decoding at once, time to first token among them, and the gap a long prefill leaves.

Written for a GPU and the `7b-random` preset (Qwen2-Audio-7B's geometry, random bf16 weights; timings
depend on the geometry, not on the weights); it runs on a CPU with small sizes for a check. Every
reply may only emit single-byte ASCII tokens (the rest suppressed), so random weights never end a
reply early: each has exactly its token budget. Sections, each written to the report as it finishes:

- `batch1`: one conversation decodes `--decode-tokens` tokens after a short prompt, CUDA graphs on and
  off: ms/token (median interval between deltas) against the floor, the language model's weight bytes
  over the device's bandwidth (measured with a large device-to-device copy; the nominal figure of the
  card is reported beside it).
- `fleet`: N conversations (`--fleet`), each with a `--history`-token text history already in its cache,
  decode `--fleet-tokens` tokens together: tokens/s in all, and per stream (min and median). A count
  whose caches do not fit the KV pool is reported as skipped.
- `ttft`: `--ttft-conversations` conversations with such histories take turns (2 s of speech-like audio
  and an instruction, a reply of `--ttft-tokens`), starting `--stagger` s apart: time from the request to
  the first token, p50 and p99, over `--ttft-turns` turns each.
- `long_prefill`: while `--ttft-conversations` conversations decode, one 30 s clip arrives: the longest
  gap between two tokens of any decoding stream, against the median interval.

    python -m bench.fleet --out fleet.json                                     # on the GPU (bench/gpu_run.sh)
    python -m bench.fleet --preset medium --fleet 1 4 --history 256 --out x.json  # a quick check on a CPU
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from aural.runtime.engine.base import AudioPart, GenerationDone, Message, SamplingParams, TextDelta
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine, TransformersSession
from aural.runtime.logs import configure_logging
from bench.conversation import INSTRUCTIONS, speech_like

GIB = 2**30
NOMINAL_GB_PER_S = {"H200": 4800, "H100 SXM": 3350, "H100 NVL": 3900, "H100 PCIe": 2000, "A100": 2039, "L40S": 864}
TARGET_FLOOR_SHARE = 0.7  # batch-1 decode at least this share of the bandwidth floor's speed
TARGET_32_TOKENS_PER_S = 2000.0
TARGET_STREAM_TOKENS_PER_S = 50.0


@contextmanager
def ascii_only(engine: TransformersEngine) -> Iterator[None]:
    """Sample only ids that decode to one ASCII character: a random model then never stops early."""
    tokenizer = engine.tokenizer
    allowed = torch.zeros(engine.model.get_output_embeddings().out_features, dtype=torch.bool)
    for i in range(len(tokenizer)):
        text = tokenizer.decode([i])
        allowed[i] = len(text) == 1 and text.isascii() and text.isprintable()
    saved, engine.suppressed = engine.suppressed, (~allowed).nonzero().squeeze(1).to(engine.device)
    try:
        yield
    finally:
        engine.suppressed = saved


def history(index: int, tokens: int) -> list[Message]:
    """A text-only history of about `tokens` byte-level tokens, different for every conversation."""
    words = " ".join(f"w{index}x{k}" for k in range(tokens))[: max(tokens - 30, 1)]
    return [Message("user", (words,), f"h{index}")]


async def timed_reply(
    session: TransformersSession, conversation: list[Message], key: str, tokens: int
) -> tuple[float, list[float]]:
    """(request time, delta arrival times) of one reply, which must use its whole budget."""
    start = time.perf_counter()
    arrivals: list[float] = []
    async for event in session.generate(conversation, key, SamplingParams(max_tokens=tokens)):
        if isinstance(event, TextDelta):
            arrivals.append(time.perf_counter())
        elif isinstance(event, GenerationDone):
            assert event.reason == "length" and event.usage.output_tokens == tokens, event
    return start, arrivals


def bandwidth_gb_per_s(device: torch.device) -> float | None:
    """A device-to-device copy of 2 GiB, timed: bytes read and written per second."""
    if device.type != "cuda":
        return None
    source = torch.empty(GIB, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    target.copy_(source)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(10):
        target.copy_(source)
    torch.cuda.synchronize(device)
    return 2 * 10 * GIB / (time.perf_counter() - start) / 1e9


def weight_bytes(engine: TransformersEngine) -> int:
    """Bytes a decode step reads: the language model's weights (the audio tower is idle while decoding)."""
    language_model = engine.model.model.language_model
    modules = [language_model, engine.model.lm_head]
    return sum(p.numel() * p.element_size() for module in modules for p in module.parameters())


async def batch1(engine: TransformersEngine, tokens: int) -> dict[str, Any]:
    device = engine.device
    measured = bandwidth_gb_per_s(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    nominal = next((rate for key, rate in NOMINAL_GB_PER_S.items() if key in name), None)
    floor = {
        "weight_gb": weight_bytes(engine) / 1e9,
        "measured_gb_per_s": measured,
        "nominal_gb_per_s": nominal,
        "floor_ms_measured": weight_bytes(engine) / measured / 1e6 if measured else None,
        "floor_ms_nominal": weight_bytes(engine) / nominal / 1e6 if nominal else None,
    }
    results: dict[str, Any] = {"floor": floor}
    graphs = engine.runner.graphs
    for mode in ("graphs", "eager"):
        if mode == "graphs" and graphs is None:
            continue
        if graphs is not None:
            graphs.enabled = mode == "graphs"
        session = await engine.open_session()
        conversation = history(0, 100)
        await timed_reply(session, conversation, "warm", 8)
        _, arrivals = await timed_reply(session, conversation, "timed", tokens)
        await session.close()
        intervals = [b - a for a, b in itertools.pairwise(arrivals)]
        results[f"{mode}_ms_per_token"] = 1000 * statistics.median(intervals)
    if graphs is not None:
        graphs.enabled = True
    best = results.get("graphs_ms_per_token", results["eager_ms_per_token"])
    floor_ms = floor["floor_ms_measured"] or floor["floor_ms_nominal"]
    if floor_ms:
        share = floor_ms / best
        results["share_of_floor"] = share
        results["target"] = {"value": share, "target": f">= {TARGET_FLOOR_SHARE}", "met": share >= TARGET_FLOOR_SHARE}
    return results


async def cached_sessions(engine: TransformersEngine, count: int, tokens: int) -> list[TransformersSession]:
    """`count` sessions, each with a `tokens`-token history in its cache (a one-token reply cached it)."""
    sessions = [await engine.open_session() for _ in range(count)]
    await asyncio.gather(*(timed_reply(s, history(i, tokens), "warm", 1) for i, s in enumerate(sessions)))
    return sessions


def fits(engine: TransformersEngine, count: int, positions: int) -> bool:
    pool = engine.pool
    return count * pool.blocks_for(positions) <= pool.capacity


async def fleet(engine: TransformersEngine, counts: list[int], history_tokens: int, tokens: int) -> list[Any]:
    rows: list[Any] = []
    for count in counts:
        if not fits(engine, count, history_tokens + tokens + 64):
            rows.append({"conversations": count, "skipped": "the KV pool cannot hold them"})
            continue
        sessions = await cached_sessions(engine, count, history_tokens)
        runs = await asyncio.gather(
            *(timed_reply(s, history(i, history_tokens), "fleet", tokens) for i, s in enumerate(sessions))
        )
        for session in sessions:
            await session.close()
        start = min(started for started, _ in runs)
        end = max(arrivals[-1] for _, arrivals in runs)
        per_stream = [(tokens - 1) / (arrivals[-1] - arrivals[0]) for _, arrivals in runs]
        row: dict[str, Any] = {
            "conversations": count,
            "history_tokens": history_tokens,
            "tokens_each": tokens,
            "tokens_per_s": count * tokens / (end - start),
            "stream_tokens_per_s_min": min(per_stream),
            "stream_tokens_per_s_median": statistics.median(per_stream),
        }
        if count == 32:
            row["target"] = {
                "tokens_per_s": {"value": row["tokens_per_s"], "target": f">= {TARGET_32_TOKENS_PER_S}"},
                "stream_min": {"value": min(per_stream), "target": f">= {TARGET_STREAM_TOKENS_PER_S}"},
                "met": row["tokens_per_s"] >= TARGET_32_TOKENS_PER_S and min(per_stream) >= TARGET_STREAM_TOKENS_PER_S,
            }
        rows.append(row)
        print(f"fleet {count}: {row['tokens_per_s']:.0f} tokens/s in all, streams >= {min(per_stream):.0f}", flush=True)
    return rows


async def ttft(engine: TransformersEngine, args: argparse.Namespace) -> dict[str, Any]:
    count = args.ttft_conversations
    if not fits(engine, count, args.history + args.ttft_turns * (60 + args.ttft_tokens) + 64):
        return {"skipped": "the KV pool cannot hold them"}
    sessions = await cached_sessions(engine, count, args.history)
    waits: list[float] = []

    async def talk(index: int, session: TransformersSession) -> None:
        await asyncio.sleep(index * args.stagger)
        conversation = history(index, args.history)
        for turn in range(args.ttft_turns):
            audio = AudioPart(f"a{index}.{turn}/0", speech_like(100 * index + turn))
            conversation.append(Message("user", (audio, INSTRUCTIONS[turn % 10]), f"a{index}.{turn}"))
            start, arrivals = await timed_reply(session, conversation, f"t{turn}", args.ttft_tokens)
            waits.append(arrivals[0] - start)
            said = engine.tokenizer.decode(session.generated[f"t{turn}"])
            conversation.append(Message("assistant", (said,), f"t{turn}"))

    await asyncio.gather(*(talk(i, s) for i, s in enumerate(sessions)))
    for session in sessions:
        await session.close()
    ordered = sorted(waits)
    return {
        "conversations": count,
        "turns_each": args.ttft_turns,
        "ttft_ms_p50": 1000 * statistics.median(ordered),
        "ttft_ms_p99": 1000 * ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
    }


async def long_prefill(engine: TransformersEngine, args: argparse.Namespace) -> dict[str, Any]:
    count = args.ttft_conversations
    if not fits(engine, count + 1, args.history + args.fleet_tokens + 800):
        return {"skipped": "the KV pool cannot hold them"}
    sessions = await cached_sessions(engine, count, args.history)
    newcomer = await engine.open_session()
    streams = [
        asyncio.create_task(timed_reply(s, history(i, args.history), "gap", args.fleet_tokens))
        for i, s in enumerate(sessions)
    ]
    await asyncio.sleep(0.2)  # the streams decode
    clip = [Message("user", (AudioPart("long/0", speech_like(7, seconds=30.0)), "Summarize."), "long")]
    arrived, first = await timed_reply(newcomer, clip, "long", 4)
    runs = await asyncio.gather(*streams)
    for session in [*sessions, newcomer]:
        await session.close()
    gaps = [b - a for _, arrivals in runs for a, b in itertools.pairwise(arrivals)]
    return {
        "conversations": count,
        "longest_gap_ms": 1000 * max(gaps),
        "median_interval_ms": 1000 * statistics.median(gaps),
        "clip_ttft_ms": 1000 * (first[0] - arrived),
        "prefill_chunk": engine.prefill_chunk,
    }


async def benchmark(args: argparse.Namespace, report: dict[str, Any], save: Any) -> None:
    engine = await asyncio.to_thread(TransformersEngine.load, args.preset, device=args.device, dtype=args.dtype)
    report["pool"] = {
        "blocks": engine.pool.capacity,
        "block_size": engine.pool.block_size,
        "kv_bytes_per_token": engine.pool.geometry.bytes_per_token,
        "pool_gib": engine.pool.num_blocks * engine.pool.bytes_per_block / GIB,
    }
    try:
        with ascii_only(engine):
            for name, section in (
                ("batch1", lambda: batch1(engine, args.decode_tokens)),
                ("fleet", lambda: fleet(engine, args.fleet, args.history, args.fleet_tokens)),
                ("ttft", lambda: ttft(engine, args)),
                ("long_prefill", lambda: long_prefill(engine, args)),
            ):
                report[name] = await section()
                save()
                print(f"{name}: {json.dumps(report[name])}", flush=True)
    finally:
        await engine.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="7b-random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--decode-tokens", type=int, default=256)
    parser.add_argument("--fleet", type=int, nargs="*", default=[1, 8, 32, 64])
    parser.add_argument("--history", type=int, default=2048, help="tokens of history per conversation")
    parser.add_argument("--fleet-tokens", type=int, default=128)
    parser.add_argument("--ttft-conversations", type=int, default=32)
    parser.add_argument("--ttft-turns", type=int, default=3)
    parser.add_argument("--ttft-tokens", type=int, default=64)
    parser.add_argument("--stagger", type=float, default=0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="the JSON report")
    args = parser.parse_args()
    configure_logging("warning")
    report: dict[str, Any] = {"config": {k: v for k, v in vars(args).items() if k != "out"}}

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")

    asyncio.run(benchmark(args, report, save))


if __name__ == "__main__":
    main()
