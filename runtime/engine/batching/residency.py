"""Which conversations' caches are in the KV pool: room made by moving idle ones to host memory (or dropping
them), and caches brought back before their jobs use them. Device thread only.

When blocks are needed that are not free, idle conversations' caches leave the pool, least recently used
first: to host memory, bit for bit, while the host budget allows; dropped otherwise (the next request
recomputes them). Conversations idle for `idle_offload` seconds leave on their own.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
import torch

from .kv_pool import KVPool, PoolFull, SequenceCache

if TYPE_CHECKING:
    from .scheduler import Job

log = structlog.get_logger(__name__)
_ids = itertools.count(1)


@dataclass(eq=False)
class Resident:
    """One conversation's state on the device: its cache and its jobs, first one active."""

    cache: SequenceCache = field(default_factory=SequenceCache)
    jobs: deque[Job] = field(default_factory=deque)
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False
    id: int = field(default_factory=lambda: next(_ids))


class Residency:
    """The pool's tenants and the moves between pool and host memory.

    Args:
        pool: the KV pool.
        idle_offload: seconds after which an idle conversation's cache leaves the pool (None: never).
        host_budget: bytes of offloaded caches kept in host memory (None: no bound); past it, victims are dropped.
    """

    def __init__(self, pool: KVPool, *, idle_offload: float | None, host_budget: int | None) -> None:
        self.pool = pool
        self.idle_offload = idle_offload
        self.host_budget = host_budget
        self.host_bytes = 0
        self.residents: list[Resident] = []

    def remove(self, resident: Resident) -> None:
        """Forget a conversation and free its cache, in the pool and in host memory."""
        if resident.cache.host is not None:
            self.host_bytes -= _size(resident.cache.host)
        self.pool.clear(resident.cache)
        if resident in self.residents:
            self.residents.remove(resident)

    def make_room(self, needed: int, keep: Resident, victims: Iterable[Resident] | None = None) -> bool:
        """Move caches out of the pool (idle conversations', or `victims`, least recently used first) until
        `needed` blocks are free; True if they are."""
        if victims is None:
            victims = (r for r in self.residents if not r.jobs and r.cache.blocks and r is not keep)
        for victim in sorted(victims, key=lambda resident: resident.last_used):
            if self.pool.free_blocks >= needed:
                break
            self.evict(victim)
        return self.pool.free_blocks >= needed

    def evict(self, resident: Resident) -> None:
        """Move a cache to host memory, or drop it when the host budget is spent."""
        cache = resident.cache
        size = len(cache.blocks) * self.pool.bytes_per_block
        if self.host_budget is not None and self.host_bytes + size > self.host_budget:
            self.pool.clear(cache)  # dropped: the next request recomputes it
            log.info("kv cache dropped", resident=resident.id, bytes=size, host_bytes=self.host_bytes)
            return
        self.host_bytes += self.pool.offload(cache)
        log.info("kv cache offloaded", resident=resident.id, bytes=size)

    def restore(self, resident: Resident) -> None:
        """Bring an offloaded cache back before its job uses it.

        Raises:
            PoolFull: there is no room for it, even after moving idle conversations out.
        """
        cache = resident.cache
        if cache.host is None:
            return
        size = _size(cache.host)
        try:
            self.pool.restore(cache)
        except PoolFull as exc:
            if not self.make_room(exc.needed, keep=resident):
                raise
            self.pool.restore(cache)
        self.host_bytes -= size

    def offload_idle(self) -> None:
        """Move out the caches of conversations idle for `idle_offload` seconds."""
        if self.idle_offload is None:
            return
        now = time.monotonic()
        for resident in self.residents:
            if not resident.jobs and resident.cache.blocks and now - resident.last_used >= self.idle_offload:
                self.evict(resident)


def _size(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
