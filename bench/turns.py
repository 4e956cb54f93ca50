"""Multi-turn benchmark: time to first token and decode speed over a voice conversation.

Every turn adds 2 s of speech-like audio and a short instruction, then asks for a reply of at most
`--tokens` tokens. A built-in preset (float32 on the CPU, the same seeded weights everywhere) serves
three measurements in one run, the first two turn by turn in alternation so that they are comparable:

- runtime: the real server (`aural serve` in its own process, on a loopback port) driven by the SDK.
  TTFT runs from just before `response.create` is sent to the first text delta read by the SDK.
- in-process: a fresh `EngineSession` of the same engine driven directly, with the same conversation
  (the audio as the server decodes it), so the difference in decode speed is what streaming costs.
- naive: transformers' `generate()` over the whole history for one token, at `--naive-turns`
  (`tests.support.reference`), with the replies the runtime produced.

Besides the times to first token, the in-process run records the engine's host work per turn: rendering
the conversation to ids (only what changed is tokenized again) and planning its prefill, which must follow
the new turn and not the history. Past the model's context (medium: 8192 tokens, near turn 60 here) the
oldest turns are dropped once and the cut kept, so only that turn re-prefills. The printed table shows
`--show` turns; the JSON has all.

The decode interval of a reply is (last delta - first delta) / (output tokens - 1): the detokenizer may
merge held-back bytes into one delta, so the token count comes from the usage. TTFTs are medians per
turn over `--repeats` runs; decode intervals are medians over all replies.

The built-in presets have random weights; the timings depend on the geometry, not on the weights.
A first delta that holds more than one token (text held back by the detokenizer) is reported, since
it would delay the first delta.

    python -m bench.turns [--preset medium] [--turns 100] [--tokens 16] [--repeats 3] [--out bench/results]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
import transformers

import aural.sdk
from aural.protocols.models import PcmFormat
from aural.protocols.server_events import ConversationItemDone
from aural.runtime.audio.pcm import PcmDecoder
from aural.runtime.engine.base import (
    SAMPLE_RATE,
    AudioSamples,
    Message,
    TokenUsage,
)
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.engine.qwen2_audio.jobs import ReplyJob
from aural.runtime.logs import configure_logging
from bench.conversation import (
    AUDIO_SECONDS,
    DirectConversation,
    Reply,
    Turn,
    conversation_turns,
    median,
    run_naive,
    timed_reply,
)
from bench.local_server import aural_serve

TARGET_VS_NAIVE = 40.0  # turn 10's TTFT at least this many times faster than naive
TARGET_GROWTH = 1.3  # turn 10's TTFT at most this many times turn 1's
TARGET_HOST_SHARE = 0.2  # the last turn's host work (render, plan) at most this share of re-tokenizing it all
TARGET_OVERHEAD_PCT = 5.0  # streaming through server and SDK slows decoding by at most this much


def as_served(samples: AudioSamples) -> AudioSamples:
    """The samples the server decodes from what the SDK sends (PCM16 at 24 kHz, back to 16 kHz)."""
    decoder = PcmDecoder(PcmFormat())
    served: AudioSamples = np.concatenate([decoder.feed(aural.sdk.encode_audio(samples, SAMPLE_RATE)), decoder.flush()])
    return served


class ServedConversation:
    """The conversation through the server and the SDK, one turn at a time."""

    def __init__(self, conn: aural.sdk.Connection, tokens: int) -> None:
        self.conn = conn
        self.tokens = tokens

    async def turn(self, turn: Turn) -> Reply:
        conn = self.conn
        await conn.add_message("user", audio=turn.audio, sample_rate=SAMPLE_RATE, text=turn.text)
        while not isinstance(await conn.recv(), ConversationItemDone):
            pass  # the server has decoded the audio: TTFT starts with the request alone
        stream = conn.create_response(max_output_tokens=self.tokens)
        arrivals = []
        start = time.perf_counter()
        async for _ in stream:
            arrivals.append(time.perf_counter())
        assert stream.response is not None and stream.response.usage is not None
        wire = stream.response.usage
        usage = TokenUsage(
            input_tokens=wire.input_tokens,
            cached_tokens=wire.input_token_details.cached_tokens,
            output_tokens=wire.output_tokens,
        )
        return timed_reply(start, arrivals, stream.text, usage)


async def run_both(
    engine: TransformersEngine, url: str, turns: Sequence[Turn], tokens: int
) -> tuple[list[Reply], list[Reply], list[Message], dict[str, list[int]]]:
    """Both conversations, turn by turn in alternation, so that drifting machine speed hits both alike.
    Also returns the direct conversation and its reply ids, as the naive reference takes them."""
    session = await engine.open_session()
    async with aural.sdk.connect(url, model=engine.model_name) as conn:
        served, direct = ServedConversation(conn, tokens), DirectConversation(session, tokens, as_served)
        served_replies, direct_replies = [], []
        for turn in turns:
            served_replies.append(await served.turn(turn))
            direct_replies.append(await direct.turn(turn))
    generated = {key: list(ids) for key, ids in session.generated.items()}
    await session.close()
    return served_replies, direct_replies, direct.conversation, generated


def summarize(
    args: argparse.Namespace,
    served: list[list[Reply]],
    direct: list[list[Reply]],
    naive: list[list[float]],
    host: list[list[float]],
    full_render: dict[int, float],
) -> dict[str, Any]:
    """The JSON report: per-turn medians over the repeats, decode intervals, targets."""
    turns = []
    naive_turns = sorted(t for t in set(args.naive_turns) if t <= args.turns)
    for k in range(args.turns):
        ttft = median([run[k].ttft_s for run in served])
        naive_ttft = median([run[naive_turns.index(k + 1)] for run in naive]) if k + 1 in naive_turns else None
        first = served[0][k]
        turns.append(
            {
                "turn": k + 1,
                "ttft_ms": 1000 * ttft,
                "ttft_ms_in_process": 1000 * median([run[k].ttft_s for run in direct]),
                "host_ms": median([run[k] for run in host]),
                "full_render_ms": full_render.get(k + 1),
                "ttft_ms_naive": 1000 * naive_ttft if naive_ttft is not None else None,
                "naive_over_runtime": naive_ttft / ttft if naive_ttft is not None else None,
                "input_tokens": first.input_tokens,
                "cached_tokens": first.cached_tokens,
                "output_tokens": first.output_tokens,
                "sdk_deltas": first.deltas,
            }
        )
    sdk = median([reply.interval_s for run in served for reply in run])
    in_process = median([reply.interval_s for run in direct for reply in run])
    overhead = 100 * (sdk / in_process - 1)
    tenth = turns[min(10, args.turns) - 1]
    growth = tenth["ttft_ms"] / turns[0]["ttft_ms"]
    host_share = median([run[-1] for run in host]) / full_render[args.turns]
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "config": {
            "preset": args.preset,
            "device": "cpu",
            "dtype": "float32",
            "turns": args.turns,
            "naive_turns": naive_turns,
            "max_output_tokens": args.tokens,
            "audio_seconds": AUDIO_SECONDS,
            "repeats": args.repeats,
        },
        "turns": turns,
        "replies_identical": [a.text for run in served for a in run] == [b.text for run in direct for b in run],
        "decode_interval_ms": {"sdk": 1000 * sdk, "in_process": 1000 * in_process, "overhead_pct": overhead},
        "targets": {
            "turn_10_vs_naive": _target(tenth["naive_over_runtime"] or 0.0, ">=", TARGET_VS_NAIVE),
            "turn_10_vs_turn_1": _target(growth, "<=", TARGET_GROWTH),
            "host_work_last_turn_vs_full_render": _target(host_share, "<=", TARGET_HOST_SHARE),
            "streaming_overhead_pct": _target(overhead, "<=", TARGET_OVERHEAD_PCT),
        },
    }


def _target(value: float, relation: str, bound: float) -> dict[str, Any]:
    met = value >= bound if relation == ">=" else value <= bound
    return {"value": value, "target": f"{relation} {bound:g}", "met": met}


def plot(report: dict[str, Any], path: Path) -> None:
    """TTFT per turn, runtime against naive, on a log axis."""
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    turns = [t["turn"] for t in report["turns"]]
    naive = [(t["turn"], t["ttft_ms_naive"]) for t in report["turns"] if t["ttft_ms_naive"] is not None]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.plot(*zip(*naive, strict=True), "o-", label="naive: generate() over the history")
    axes.plot(turns, [t["ttft_ms"] for t in report["turns"]], ".-", label="Aural: server + SDK")
    axes.plot(turns, [t["host_ms"] for t in report["turns"]], ".-", label="Aural: host work (render, plan)")
    axes.set_yscale("log")
    axes.set_xlabel("turn")
    axes.set_ylabel("time to first token (ms)")
    config = report["config"]
    axes.set_title(f"{config['preset']} preset, CPU float32, {config['audio_seconds']:g} s audio + text per turn")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def print_summary(report: dict[str, Any], show: list[int]) -> None:
    header = ("turn", "input", "cached", "out", "TTFT ms", "in-proc", "host ms", "re-render", "naive ms", "speedup")
    widths = (4, 6, 6, 4, 8, 8, 8, 9, 9, 8)
    print(" ".join(f"{name:>{width}}" for name, width in zip(header, widths, strict=True)))
    for t in report["turns"]:
        if t["turn"] not in show and t["ttft_ms_naive"] is None:
            continue
        naive = f"{t['ttft_ms_naive']:>9.1f} {t['naive_over_runtime']:>7.1f}x" if t["ttft_ms_naive"] else ""
        print(
            f"{t['turn']:>4} {t['input_tokens']:>6} {t['cached_tokens']:>6} {t['output_tokens']:>4} "
            f"{t['ttft_ms']:>8.1f} {t['ttft_ms_in_process']:>8.1f} {t['host_ms']:>8.2f} "
            f"{t['full_render_ms'] or 0:>9.2f} {naive}"
        )
    interval = report["decode_interval_ms"]
    print(
        f"decode interval: SDK {interval['sdk']:.2f} ms/token, in-process {interval['in_process']:.2f} ms/token "
        f"(overhead {interval['overhead_pct']:+.1f}%); replies identical: {report['replies_identical']}"
    )
    for name, target in report["targets"].items():
        print(f"{name}: {target['value']:.2f} (target {target['target']}): {'met' if target['met'] else 'NOT met'}")


@contextmanager
def host_work() -> Iterator[list[float]]:
    """Milliseconds each in-process reply spends rendering the conversation and planning its prefill."""
    times: list[float] = []
    start = ReplyJob._start

    def timed(job: ReplyJob) -> Any:
        began = time.perf_counter()
        try:
            return start(job)
        finally:
            times.append(1000 * (time.perf_counter() - began))

    ReplyJob._start = timed  # type: ignore[method-assign,assignment]
    try:
        yield times
    finally:
        ReplyJob._start = start  # type: ignore[method-assign]


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    engine = TransformersEngine.load(args.preset, device="cpu", dtype="float32")
    turns = conversation_turns(args.turns)
    try:
        async with aural_serve(args.preset) as url:
            await run_both(engine, url, turns[:1], args.tokens)  # warm-up: first-use costs of every layer
            served, direct, naive, host = [], [], [], []
            for _ in range(args.repeats):
                with host_work() as times:
                    served_replies, direct_replies, conversation, generated = await run_both(
                        engine, url, turns, args.tokens
                    )
                served.append(served_replies)
                direct.append(direct_replies)
                host.append(times)
                naive.append(await run_naive(engine, conversation, generated, args.naive_turns))
            shown = {*args.show, args.turns}
            full_render = {k: full_render_ms(engine, conversation[: 2 * k - 1], generated) for k in shown}
    finally:
        await engine.close()
    return summarize(args, served, direct, naive, host, full_render)


def full_render_ms(
    engine: TransformersEngine, conversation: Sequence[Message], generated: dict[str, list[int]]
) -> float:
    """What rendering and tokenizing the whole conversation again costs (median of 5, the tokenizer's cache of
    short texts emptied first): the work a turn would do if it did not keep the previous rendering."""
    times = []
    for _ in range(5):
        engine.chat_format.clear_cache()
        began = time.perf_counter()
        engine.chat_format.render(conversation, generated.get)
        times.append(1000 * (time.perf_counter() - began))
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--turns", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=16, help="max output tokens per reply")
    parser.add_argument("--repeats", type=int, default=3, help="runs of the whole conversation")
    parser.add_argument("--naive-turns", type=int, nargs="*", default=[1, 5, 10])
    parser.add_argument("--show", type=int, nargs="*", default=[1, 10, 50, 100], help="turns to print")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    configure_logging("warning")
    report = asyncio.run(benchmark(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turns.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "turns.png")
    print_summary(report, args.show)


if __name__ == "__main__":
    main()
