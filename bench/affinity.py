"""Which way of keeping a conversation on one replica works for streaming handles: Serve's model multiplexing keyed
by conversation id, or Aural's `ConversationRouter` (no model: two replicas that stream 20 items a call).

    python -m bench.affinity [--conversations 16] [--turns 6] [--out bench/results/affinity.json]

Each conversation makes `--turns` streaming calls, all conversations at once; reported per way: conversations
whose calls reached more than one replica (their cache would have been rebuilt), and how the new conversations
spread over the replicas. Then a skewed case: one replica reports less free KV (a long conversation lives
there); multiplexing cannot see it (it places new ids on the replica with fewest models), the router can.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.serve.config import RequestRouterConfig
from ray.serve.handle import DeploymentHandle

from aural.runtime.cluster.router import ConversationRouter

ITEMS = 20
FULLER = 1000
"""Free KV blocks of the replica that holds less room in the skewed case (the other reports 4 times as many)."""


@serve.deployment(num_replicas=2, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
class Multiplexed:
    @serve.multiplexed(max_num_models_per_replica=1024)  # type: ignore[untyped-decorator]
    async def conversation(self, conversation_id: str) -> str:
        return conversation_id

    async def generate(self, conversation_id: str, items: int) -> AsyncIterator[int]:
        await self.conversation(serve.get_multiplexed_model_id())
        for _ in range(items):
            await asyncio.sleep(0.002)
            yield os.getpid()


class Keyed:
    """A replica that reports free KV blocks: with a `marker` path, the first replica to create it reports `FULLER`,
    the other 4 times as many."""

    def __init__(self, marker: str | None) -> None:
        self._free = 4 * FULLER
        if marker is not None:
            try:
                os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
                self._free = FULLER
            except FileExistsError:
                pass

    def record_routing_stats(self) -> dict[str, Any]:
        return {"blocks_free": self._free, "conversations": 0, "time": time.time()}

    async def generate(self, conversation_id: str, items: int) -> AsyncIterator[int]:
        for _ in range(items):
            await asyncio.sleep(0.002)
            yield os.getpid()


async def drive(handle: DeploymentHandle[Any], multiplexed: bool, conversations: int, turns: int) -> dict[str, Any]:
    reached: defaultdict[str, set[int]] = defaultdict(set)
    placed: Counter[int] = Counter()

    async def conversation(number: int) -> None:
        key = f"c{number}"
        for turn in range(turns):
            calls = handle.options(stream=True, multiplexed_model_id=key if multiplexed else "")
            pids = {pid async for pid in calls.generate.remote(key, ITEMS)}  # type: ignore[union-attr]
            reached[key] |= pids
            if turn == 0:
                placed[next(iter(pids))] += 1
            await asyncio.sleep(0.05)

    await asyncio.gather(*(conversation(number) for number in range(conversations)))
    return {
        "conversations_on_more_than_one_replica": sum(len(pids) > 1 for pids in reached.values()),
        "new_conversations_per_replica": sorted(placed.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=16)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("bench/results/affinity.json"))
    args = parser.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="affinity")
    serve.start(http_options={"port": 0})
    router = RequestRouterConfig.model_validate(
        {"request_router_class": ConversationRouter, "request_routing_stats_period_s": 1.0}
    )
    keyed = serve.deployment(num_replicas=2, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0},
                             request_router_config=router)(Keyed)  # fmt: skip
    report: dict[str, Any] = {"conversations": args.conversations, "turns": args.turns}
    marker = Path(tempfile.mkdtemp()) / "fuller"
    cases = [
        ("multiplexed", Multiplexed.bind(), True),  # type: ignore[attr-defined]
        ("conversation_router", keyed.bind(None), False),
        ("conversation_router_skewed", keyed.bind(str(marker)), False),
    ]
    loop = asyncio.new_event_loop()
    try:
        for name, app, multiplexed in cases:
            handle = serve.run(app, name=name, route_prefix=f"/{name}")
            time.sleep(3)  # the replicas' first routing reports
            report[name] = loop.run_until_complete(drive(handle, multiplexed, args.conversations, args.turns))
            print(name, report[name], flush=True)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
