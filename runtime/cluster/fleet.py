"""The replicas' reports, where every ingress can read them: a named, detached actor (the fleet board).

Each engine replica posts its `ReplicaReport` every `REPORT_PERIOD` seconds; each ingress reads them all as
often and keeps the latest (`FleetView`), so that its `/healthz`, `/metrics` and `RemoteEngine.stats` answer at
once, without a call at scrape time. A replica that stopped posting (dead, drained) drops out after `STALE`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator, Sequence

import ray
import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from ray import serve

from .replica import ReplicaReport

log = structlog.get_logger(__name__)

BOARD = "aural-fleet"
"""The board actor's name, followed by the Serve application's (two applications keep apart)."""
REPORT_PERIOD = 1.0
"""Seconds between two reports of a replica, and two reads of an ingress."""
STALE = 5 * REPORT_PERIOD
"""Seconds after which a replica's last report no longer counts."""


@ray.remote(num_cpus=0)
class FleetBoard:
    """The latest report of each replica."""

    def __init__(self) -> None:
        self._reports: dict[str, ReplicaReport] = {}

    def post(self, report: ReplicaReport) -> None:
        self._reports[report.replica] = report

    def withdraw(self, replica: str) -> None:
        self._reports.pop(replica, None)

    def reports(self) -> list[ReplicaReport]:
        now = time.time()
        for replica, report in list(self._reports.items()):
            if now - report.time > STALE:
                del self._reports[replica]
        return list(self._reports.values())


def board() -> ray.actor.ActorHandle[FleetBoard]:
    """The fleet board of this replica's Serve application, created by whoever asks first; it lives as long as the Ray
    cluster."""
    name = f"{BOARD}:{serve.get_replica_context().app_name}"
    return FleetBoard.options(name=name, lifetime="detached", get_if_exists=True).remote()  # type: ignore[attr-defined,no-any-return]


class FleetView:
    """An ingress' copy of the board, refreshed every `REPORT_PERIOD` seconds once `start`ed."""

    def __init__(self) -> None:
        self._reports: list[ReplicaReport] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh())

    def latest(self) -> Sequence[ReplicaReport]:
        now = time.time()
        return [report for report in self._reports if now - report.time <= STALE]

    async def _refresh(self) -> None:
        fleet = board()
        while True:
            try:
                self._reports = await fleet.reports.remote()
            except Exception:  # the board restarts with the cluster's next actor; keep the last copy meanwhile
                log.warning("fleet board unreachable", exc_info=True)
                with contextlib.suppress(Exception):
                    fleet = board()
            await asyncio.sleep(REPORT_PERIOD)


class ReplicaMetrics(Collector):
    """Each replica's figures on the ingress' `/metrics`, labelled by replica."""

    def __init__(self, view: FleetView) -> None:
        self._view = view

    def collect(self) -> Iterator[Metric]:
        reports = self._view.latest()
        conversations = GaugeMetricFamily(
            "aural_replica_conversations", "Conversations an engine replica holds.", labels=["replica"]
        )
        healthy = GaugeMetricFamily(
            "aural_replica_healthy", "1 while an engine replica is healthy.", labels=["replica"]
        )
        pool = GaugeMetricFamily(
            "aural_replica_kv_pool_bytes", "An engine replica's KV pool, in bytes.", labels=["replica", "state"]
        )
        for report in reports:
            conversations.add_metric([report.replica], report.conversations)
            healthy.add_metric([report.replica], float(report.healthy))
            if report.stats is not None:
                per_block = report.stats.bytes_per_block
                pool.add_metric([report.replica, "used"], report.stats.blocks_used * per_block)
                pool.add_metric([report.replica, "total"], report.stats.blocks_total * per_block)
        yield conversations
        yield healthy
        yield pool
