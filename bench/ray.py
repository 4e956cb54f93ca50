"""Aural on Ray Serve against the single-process runtime: what the extra hop costs each token, and
conversations/s with one engine replica and with two.

The same model (a built-in preset on the CPU, `--model`) is served three ways at once, each warmed up:
`aural serve` in its own process (single), and on one local Ray cluster two Serve applications of
`aural.runtime.cluster` (`application(ClusterSettings(...))`): `one`, an ingress and one engine replica that
takes all the cores (Ray gives a replica's torch as many threads as it reserves CPUs for it), and `two`, an
ingress and two engine replicas taking half the cores each. Ray's start and the replicas' model loads are
reported apart, outside every timing. The clients are raw websockets (`bench.wire`) in this process.

- hop: `--conversations` conversations of `--turns` text turns (a reply of at most `--tokens` tokens each)
  run one at a time, each on single and on `one` in turn, the order flipped every conversation, for
  `--rounds` rounds (one round on single alone first, before Ray started, for reference). Per reply: time to
  first token (TTFT, from sending the message and `response.create` to the first text delta) and the decode
  interval, (last delta - first delta) / (output tokens - 1). Per round, the medians' ratio Ray / single; the
  per-token overhead of the hop is the median of those ratios less 1 (target: at most 5%), with their spread.
- conversations/s: `--short` conversations (open, `--short-turns` turns of `--short-tokens` tokens, close), at
  most `--concurrency` open at once, on single, `one` and `two` in rotating order, `--rounds` times.
  On a CPU the two replicas of `two` share the cores that `one`'s replica has alone: the figure shows what
  the routing costs, not how replicas scale (that needs one accelerator per replica).
- idle: the CPU that Ray's processes (and the single server) use while no conversation runs, over
  `IDLE_WINDOW` seconds: Ray's background work runs during every measurement, single's included.

    python -m bench.ray [--model medium] [--rounds 3] [--conversations 2] [--turns 4] [--tokens 64]
                        [--short 12] [--short-turns 2] [--short-tokens 16] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import ray
import torch
from ray import serve

from aural.runtime.cluster.deploy import ClusterSettings, application, local_cluster_env
from aural.runtime.cluster.replica import EngineLoader
from aural.runtime.engine.base import TokenUsage
from aural.runtime.logs import configure_logging
from bench.conversation import INSTRUCTIONS, Reply, timed_reply
from bench.local_server import aural_serve, free_port, write_report
from bench.wire import Conversation, conversation

OUT = Path(__file__).with_name("results") / "ray.json"
KV_MIB = 512
"""Each engine's KV pool (the single server's and every replica's)."""
IDLE_WINDOW = 10.0
TARGET_OVERHEAD = 0.05
SINGLE, ONE, TWO = "single", "one", "two"
SHAPES = {ONE: 1, TWO: 2}
"""The Serve applications: engine replicas of each."""


async def timed_turn(client: Conversation, text: str, tokens: int) -> Reply:
    """A user text message and a response of at most `tokens` tokens, read to `response.done`."""
    start = time.perf_counter()
    await client.write(text, tokens)
    arrivals: list[float] = []
    pieces: list[str] = []
    while (event := await client.recv())["type"] != "response.done":
        if event["type"] == "error":
            raise RuntimeError(f"error event: {event['error']}")
        if event["type"] == "response.output_text.delta":
            arrivals.append(time.perf_counter())
            pieces.append(event["delta"])
    usage = event["response"]["usage"]
    cached = usage.get("input_token_details", {}).get("cached_tokens", 0)
    counts = TokenUsage(usage["input_tokens"], cached, output_tokens=usage["output_tokens"])
    return timed_reply(start, arrivals, "".join(pieces), counts)


async def talk(url: str, index: int, turns: int, tokens: int) -> list[Reply]:
    """Conversation `index`: `turns` text turns, one after the other."""
    async with conversation(url) as client:
        texts = [INSTRUCTIONS[(index + turn) % len(INSTRUCTIONS)] for turn in range(turns)]
        return [await timed_turn(client, text, tokens) for text in texts]


async def hop_round(urls: dict[str, str], args: argparse.Namespace, round_index: int) -> dict[str, list[Reply]]:
    """One round of the hop measurement: each conversation on every target in turn, the order flipped each time."""
    replies: dict[str, list[Reply]] = {name: [] for name in urls}
    for index in range(args.conversations):
        names = list(urls)
        if (round_index * args.conversations + index) % 2:
            names.reverse()
        for name in names:
            replies[name] += await talk(urls[name], index, args.turns, args.tokens)
    return replies


async def short_conversations(url: str, args: argparse.Namespace) -> dict[str, float]:
    """`--short` short conversations, at most `--concurrency` at once: conversations/s and their TTFT."""
    gate = asyncio.Semaphore(args.concurrency)

    async def one(index: int) -> list[Reply]:
        async with gate:
            return await talk(url, index, args.short_turns, args.short_tokens)

    began = time.perf_counter()
    runs = await asyncio.gather(*(one(index) for index in range(args.short)))
    wall = time.perf_counter() - began
    ttfts = [reply.ttft_s for run in runs for reply in run]
    return {"wall_s": wall, "conversations_per_s": args.short / wall, "ttft_ms_p50": 1000 * statistics.median(ttfts)}


def spread(values: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    """Median and quartiles (times `scale`)."""
    p25, p50, p75 = np.percentile(values, [25, 50, 75])
    return {"p25": scale * p25, "p50": scale * p50, "p75": scale * p75}


def ratios(values: Sequence[float]) -> dict[str, float]:
    """Median, least and greatest of per-round ratios."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize_replies(replies: Sequence[Reply]) -> dict[str, Any]:
    intervals = [reply.interval_s for reply in replies if reply.interval_s is not None]
    return {
        "replies": len(replies),
        "output_tokens": sum(reply.output_tokens for reply in replies),
        "ttft_ms": spread([reply.ttft_s for reply in replies], 1000),
        "ms_per_token": spread(intervals, 1000),
        "tokens_per_s": 1 / statistics.median(intervals),
    }


def median_interval(replies: Sequence[Reply]) -> float:
    return statistics.median(reply.interval_s for reply in replies if reply.interval_s is not None)


def median_ttft(replies: Sequence[Reply]) -> float:
    return statistics.median(reply.ttft_s for reply in replies)


def summarize_hop(alone: Sequence[Reply], rounds: Sequence[dict[str, list[Reply]]]) -> dict[str, Any]:
    per_round = [
        {
            "single_ms_per_token": 1000 * median_interval(replies[SINGLE]),
            "ray_ms_per_token": 1000 * median_interval(replies[ONE]),
            "single_ttft_ms": 1000 * median_ttft(replies[SINGLE]),
            "ray_ttft_ms": 1000 * median_ttft(replies[ONE]),
        }
        for replies in rounds
    ]
    token_ratios = [row["ray_ms_per_token"] / row["single_ms_per_token"] for row in per_round]
    overhead = statistics.median(token_ratios) - 1
    return {
        "single_before_ray": summarize_replies(alone),
        "single": summarize_replies([reply for replies in rounds for reply in replies[SINGLE]]),
        "ray": summarize_replies([reply for replies in rounds for reply in replies[ONE]]),
        "rounds": per_round,
        "ms_per_token_ray_over_single": ratios(token_ratios),
        "ttft_ray_over_single": ratios([row["ray_ttft_ms"] / row["single_ttft_ms"] for row in per_round]),
        "ttft_ray_minus_single_ms": ratios([row["ray_ttft_ms"] - row["single_ttft_ms"] for row in per_round]),
        "per_token_overhead": {"value": overhead, "target": f"<= {TARGET_OVERHEAD:.0%}", "met": overhead <= 0.05},
    }


def summarize_throughput(
    with_one: Sequence[dict[str, dict[str, float]]], with_two: Sequence[dict[str, dict[str, float]]]
) -> dict[str, Any]:
    """Conversations/s of each Ray application and of single in the same rounds; each application over single round
    by round, and two replicas over one as the ratio of those."""
    phases = {ONE: with_one, TWO: with_two}
    rows: dict[str, dict[str, Any]] = {}
    over_single: dict[str, dict[str, float]] = {}
    for name, rounds in phases.items():
        for target, label in ((SINGLE, f"single_beside_{name}"), (name, name)):
            rows[label] = {
                "conversations_per_s": ratios([run[target]["conversations_per_s"] for run in rounds]),
                "ttft_ms_p50": statistics.median(run[target]["ttft_ms_p50"] for run in rounds),
            }
        over_single[name] = ratios(
            [run[name]["conversations_per_s"] / run[SINGLE]["conversations_per_s"] for run in rounds]
        )
    return {
        "rows": rows,
        "rounds": {name: list(rounds) for name, rounds in phases.items()},
        "over_single": over_single,
        "two_over_one": over_single[TWO]["median"] / over_single[ONE]["median"],
        "two_over_one_raw": rows[TWO]["conversations_per_s"]["median"] / rows[ONE]["conversations_per_s"]["median"],
    }


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after the command's name, which may hold spaces


def descendants(root: int) -> set[int]:
    """The processes below `root` (Linux's /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def cpu_seconds(pids: set[int]) -> float:
    """User and system CPU time the processes used so far."""
    ticks = 0
    for pid in pids:
        if (fields := _stat(pid)) is not None:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_groups() -> dict[str, set[int]]:
    """The single server's processes, and Ray's: the rest below this one, and this one (Ray's driver)."""
    below = descendants(os.getpid())
    servers = set()
    for pid in below:
        with contextlib.suppress(OSError):
            if b"aural.cli.main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                servers |= {pid, *descendants(pid)}
    return {SINGLE: servers, "ray": (below - servers) | {os.getpid()}}


async def idle_cpu() -> dict[str, float]:
    """Percent of one core that each group of `process_groups` uses while no conversation runs."""
    groups = process_groups()
    before = {name: cpu_seconds(pids) for name, pids in groups.items()}
    await asyncio.sleep(IDLE_WINDOW)
    return {name: 100 * (cpu_seconds(pids) - before[name]) / IDLE_WINDOW for name, pids in groups.items()}


class RayServe:
    """A local Ray cluster with Serve's proxy on a loopback port, where `SHAPES`' applications are deployed one at a
    time (`deploy`): an application of Aural's engine replicas on the CPU, each reserving an equal share of the cores
    (and so using as many torch threads)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.port = free_port()
        self.started: dict[str, float] = {}

    def __enter__(self) -> RayServe:
        began = time.perf_counter()
        cores = os.cpu_count() or 1
        local_cluster_env()
        ray.init(num_cpus=cores, include_dashboard=False, namespace="aural-bench", log_to_driver=False)
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        self.started["ray"] = time.perf_counter() - began
        return self

    def __exit__(self, *exc: object) -> None:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()

    def deploy(self, name: str) -> str:
        """Application `name` (its replicas' models loaded), the only one; its realtime URL."""
        for other in self.started.keys() & SHAPES.keys():
            serve.delete(other)
        began = time.perf_counter()
        replicas = SHAPES[name]
        loader = EngineLoader(self.model, {"device": "cpu", "kv_budget": KV_MIB << 20})
        settings = ClusterSettings(loader, replicas=replicas, cpus_per_replica=threads_per_replica(replicas))
        serve.run(application(settings), name=name, route_prefix=f"/{name}")
        self.started[name] = time.perf_counter() - began
        return f"ws://127.0.0.1:{self.port}/{name}/v1/realtime?model={self.model}"


def threads_per_replica(replicas: int) -> int:
    return max(1, (os.cpu_count() or 1) // replicas)


async def warm_up(url: str) -> None:
    """First-use costs of every layer, on every replica (two conversations at once spread over two)."""
    await asyncio.gather(*(talk(url, index, 1, 8) for index in range(2)))


async def throughput_rounds(urls: dict[str, str], args: argparse.Namespace) -> list[dict[str, dict[str, float]]]:
    """`short_conversations` on each target in turn, the order flipped every round."""
    rounds = []
    for index in range(args.rounds):
        names = list(urls)[:: -1 if index % 2 else 1]
        rounds.append({name: await short_conversations(urls[name], args) for name in names})
    return rounds


async def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    began = time.perf_counter()
    options = ["--device", "cpu", "--kv-budget", f"{KV_MIB}MiB"]
    async with aural_serve(args.model, options) as served:
        single = f"{served}?model={args.model}"
        startup = {SINGLE: time.perf_counter() - began}
        await warm_up(single)
        alone = (await hop_round({SINGLE: single}, args, 0))[SINGLE]
        with RayServe(args.model) as cluster:
            one = cluster.deploy(ONE)
            await warm_up(one)
            idle = await idle_cpu()
            hop = [await hop_round({SINGLE: single, ONE: one}, args, index) for index in range(args.rounds)]
            with_one = await throughput_rounds({SINGLE: single, ONE: one}, args)
            two = cluster.deploy(TWO)
            await warm_up(two)
            with_two = await throughput_rounds({SINGLE: single, TWO: two}, args)
            startup |= cluster.started
    return {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads_single": torch.get_num_threads(),
            "torch_threads_per_replica": {name: threads_per_replica(n) for name, n in SHAPES.items()},
            "torch": torch.__version__,
            "ray": ray.__version__,
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "config": {
            key: getattr(args, key)
            for key in ("model", "rounds", "conversations", "turns", "tokens", "short", "short_turns")
        }
        | {"short_tokens": args.short_tokens, "concurrency": args.concurrency, "kv_mib": KV_MIB},
        "command": " ".join(["python -m bench.ray", *sys.argv[1:]]),
        "startup_s": startup,
        "idle_cpu_percent_of_a_core": idle,
        "hop": summarize_hop(alone, hop),
        "conversations_per_s": summarize_throughput(with_one, with_two),
    }


def plot(report: dict[str, Any], path: Path) -> None:
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    hop, rows = report["hop"], report["conversations_per_s"]["rows"]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4))
    for panel, key, label in ((axes[0], "ms_per_token", "ms per token"), (axes[1], "ttft_ms", "TTFT, ms")):
        names = ["single_before_ray", "single", "ray"]
        values = [hop[name][key] for name in names]
        errors = [[v["p50"] - v["p25"] for v in values], [v["p75"] - v["p50"] for v in values]]
        panel.bar(["single (alone)", "single", "Ray, 1 replica"], [v["p50"] for v in values], yerr=errors, capsize=6)
        panel.set_ylabel(f"{label} (median, quartiles)")
    labels = {
        "single_beside_one": "single",
        ONE: "Ray, 1 replica",
        "single_beside_two": "single ",
        TWO: "Ray, 2 replicas",
    }
    per_s = [rows[name]["conversations_per_s"] for name in labels]
    errors = [[v["median"] - v["min"] for v in per_s], [v["max"] - v["median"] for v in per_s]]
    colors = ["tab:gray", "tab:blue", "tab:gray", "tab:orange"]
    axes[2].bar(list(labels.values()), [v["median"] for v in per_s], yerr=errors, capsize=6, color=colors)
    axes[2].set_ylabel("conversations/s (median, range of rounds)")
    for panel in axes:
        panel.grid(True, axis="y", alpha=0.3)
    config = report["config"]
    figure.suptitle(
        f"{config['model']} preset, CPU float32, {report['machine']['cpu_count']} cores: {config['tokens']}-token "
        f"replies one at a time; {config['short']} conversations of {config['short_turns']} turns, "
        f"{config['concurrency']} at once"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="medium", help="a built-in preset (tiny for a quick run)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conversations", type=int, default=2, help="conversations per round of the hop")
    parser.add_argument("--turns", type=int, default=4, help="turns of each hop conversation")
    parser.add_argument("--tokens", type=int, default=64, help="max output tokens of a hop reply")
    parser.add_argument("--short", type=int, default=12, help="short conversations per round of conversations/s")
    parser.add_argument("--short-turns", type=int, default=2)
    parser.add_argument("--short-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4, help="short conversations open at once")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    configure_logging("warning")
    report = asyncio.run(benchmark(args))
    write_report(report, args.out)
    plot(report, args.out.with_suffix(".png"))
    hop = report["hop"]
    print(f"{'':>22} {'ms/token p50':>13} {'TTFT p50':>10}")
    for name in ("single_before_ray", "single", "ray"):
        print(f"{name:>22} {hop[name]['ms_per_token']['p50']:>13.2f} {hop[name]['ttft_ms']['p50']:>8.1f}ms")
    ratio = hop["ms_per_token_ray_over_single"]
    overhead = hop["per_token_overhead"]
    print(
        f"per-token overhead {overhead['value']:+.1%} (rounds {ratio['min'] - 1:+.1%} .. {ratio['max'] - 1:+.1%}), "
        f"target {overhead['target']}: {'met' if overhead['met'] else 'NOT met'}"
    )
    throughput = report["conversations_per_s"]
    for name, row in throughput["rows"].items():
        per_s = row["conversations_per_s"]
        print(f"{name:>17}: {per_s['median']:.2f} conversations/s ({per_s['min']:.2f}-{per_s['max']:.2f})")
    print(f"two replicas over one (each over single): {throughput['two_over_one']:.2f}")
    print(f"idle CPU, % of a core: {report['idle_cpu_percent_of_a_core']}")


if __name__ == "__main__":
    main()
