"""The device loop: one thread runs every conversation's model work, decode steps batched.

Each conversation resident on the device (`Resident`) has a queue of jobs (a reply, a speculative
prefill) that run one after another, in the order they were asked for; only the first is active. An
active job is always in one of two phases. In its *chunk* phase it needs bounded units of work on its
own: rendering the conversation and planning the prefill, encoding one audio clip, prefilling up to
`prefill_chunk` positions, or feeding the tokens a grammar forced. In its *decode* phase it has exactly
one token to feed and wants the next token's logits: all such jobs form one batch and run as one
forward.

The loop alternates: one batched decode step for every decoding job, then at most one chunk unit (a
live grammar feed first, else the oldest job's), then again. So a long prefill never freezes the other
streams: between two decode steps of a live stream there is at most one unit of someone else's
prefill. Conversations join the batch when their prefill ends and leave it when their reply does.

Memory: every position lives in the paged pool (`KVPool`). When a unit or a decode step needs blocks
that are not free, the loop first moves idle conversations' caches to host memory (least recently used
first; dropped instead when the host budget is spent); if that is not enough it either fails the job
with `KVBudgetExceeded` (`on_full="error"`) or lets it wait (`on_full="wait"`) while the others go on
— and, should every job be waiting, moves the caches of all but the oldest waiting conversation to host
memory so that the oldest can proceed. Conversations idle for `idle_offload` seconds move to host memory
on their own; a job restores its conversation's cache bit for bit before it uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import structlog
import torch

from ...errors import KVBudgetExceeded
from .kv_pool import KVPool, PoolFull, SequenceCache

log = structlog.get_logger(__name__)
T = TypeVar("T")
OnFull = Literal["wait", "error"]
Phase = Literal["chunk", "decode", "done"]
DecodeFn = Callable[[list[int], list[SequenceCache]], torch.Tensor]
"""Feeds one token per cache (positions after each cache's last, blocks reserved) in one batch; returns
the next-token logits `[rows, vocab]`."""

_ids = itertools.count(1)
_orders = itertools.count(1)
_TICK = 0.5  # seconds between idle checks while nothing runs


@dataclass(eq=False)
class Resident:
    """One conversation's state on the device: its cache and its jobs, first one active."""

    cache: SequenceCache = field(default_factory=SequenceCache)
    jobs: deque[Job] = field(default_factory=deque)
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False
    id: int = field(default_factory=lambda: next(_ids))


class Job(ABC):
    """Model work for one conversation, run unit by unit on the device thread."""

    resident: Resident
    order: int = 0
    """Set when the job is submitted: first come, first served."""

    @abstractmethod
    def phase(self) -> Phase:
        """What the job needs next: a chunk unit, a place in the decode batch, or nothing (finished)."""

    @abstractmethod
    def run_chunk(self) -> None:
        """Do one bounded unit of work alone.

        Raises:
            PoolFull: its positions need blocks that are not free; nothing was done (the unit is retried).
        """

    def live_feed(self) -> bool:
        """True when the chunk unit is part of a live reply (tokens a grammar forced): it goes first."""
        return False

    def next_token(self) -> int:
        """Decode phase: the token to feed."""
        raise NotImplementedError

    def take_logits(self, logits: torch.Tensor) -> None:
        """Decode phase: the fed token is in the cache; these are the logits after it."""
        raise NotImplementedError

    @abstractmethod
    def poll(self) -> None:
        """Before each step: end the job early if it was cancelled or superseded."""

    @abstractmethod
    def fail(self, error: Exception) -> None:
        """End the job with an error, logging it unless it is an `EngineError` (an expected refusal). The
        scheduler clears the conversation's cache first when the error came from the model mid-forward."""


@dataclass(frozen=True)
class ScheduleEntry:
    """One unit the loop ran: a batched decode step over some conversations, or one chunk unit."""

    kind: Literal["decode", "chunk"]
    residents: tuple[int, ...]


class Scheduler:
    """The device thread and its loop (see the module docstring).

    Args:
        pool: the paged KV pool every conversation's cache lives in.
        decode: the batched forward of one token per conversation.
        on_full: what a job that needs blocks that are not free does: wait, or fail.
        idle_offload: seconds after which an idle conversation's cache moves to host memory (None: never).
        host_budget: bytes of offloaded caches kept in host memory; past it, victims are dropped.
        trace: keep the last `trace` schedule entries (for tests; 0: none).
    """

    def __init__(
        self,
        pool: KVPool,
        decode: DecodeFn,
        *,
        on_full: OnFull = "wait",
        idle_offload: float | None = None,
        host_budget: int | None = None,
        trace: int = 0,
        name: str = "aural-device",
    ) -> None:
        self.pool = pool
        self.decode = decode
        self.on_full = on_full
        self.idle_offload = idle_offload
        self.host_budget = host_budget
        self.host_bytes = 0
        self.residents: list[Resident] = []
        self.schedule: deque[ScheduleEntry] = deque(maxlen=trace or 1)
        self._trace = trace > 0
        self._inbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._waiting: set[Resident] = set()  # their jobs wait for blocks
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # --- any thread ---------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job behind its conversation's earlier ones."""
        self._inbox.put(lambda: self._admit(job))

    async def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the device thread between two steps; return its result or raise its exception."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(result: T | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def run() -> None:
            try:
                result, error = fn(), None
            except Exception as exc:  # handed to the awaiting coroutine
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody awaits
                loop.call_soon_threadsafe(settle, result, error)

        self._inbox.put(run)
        return await future

    def shutdown(self) -> None:
        """Stop after the current step (queued jobs are abandoned) and join the thread."""
        self._inbox.put(None)
        self._thread.join(timeout=10)

    # --- device thread ------------------------------------------------------------------------------

    def add(self, resident: Resident) -> None:
        self.residents.append(resident)

    def remove(self, resident: Resident) -> None:
        """A conversation ended: its jobs end (they see `closed`), its cache is freed (device and host)."""
        resident.closed = True
        for job in resident.jobs:
            job.poll()
        resident.jobs.clear()
        if resident.cache.host is not None:
            self.host_bytes -= _size(resident.cache.host)
        self.pool.clear(resident.cache)
        self._waiting.discard(resident)
        with contextlib.suppress(ValueError):
            self.residents.remove(resident)

    def _admit(self, job: Job) -> None:
        job.order = next(_orders)
        if job.resident.closed:
            job.poll()
            return
        job.resident.jobs.append(job)
        job.resident.last_used = time.monotonic()

    @torch.inference_mode()
    def _run(self) -> None:
        while not self._stopped:
            self._take_inbox(block=not self._busy())
            if self._stopped:
                break
            try:
                self._step()
            except Exception as exc:  # a bug: end the active jobs rather than retry them forever
                log.exception("device loop step failed")
                for job in self._heads():
                    self.pool.clear(job.resident.cache)
                    job.fail(exc)

    def _busy(self) -> bool:
        return any(resident.jobs for resident in self.residents)

    def _take_inbox(self, *, block: bool) -> None:
        timeout = _TICK if block and self.idle_offload is not None else None
        while True:
            try:
                item = self._inbox.get(block=block, timeout=timeout)
            except queue.Empty:
                return
            if item is None:
                self._stopped = True
                return
            item()
            block = False

    def _step(self) -> None:
        decoding = [job for job in self._heads() if job.phase() == "decode"]
        progressed = bool(decoding) and self._decode_step(decoding)
        chunking = [job for job in self._heads() if job.phase() == "chunk"]
        chunking.sort(key=lambda job: (not job.live_feed(), job.order))  # live feeds, then the oldest
        for job in chunking:
            outcome = self._chunk(job)
            if outcome == "ran":
                progressed = True
                break
            if outcome == "waits" and not job.live_feed():
                break  # first come, first served: a younger prefill does not overtake a waiting one
        if not progressed and self._waiting:
            self._unblock()
        self._offload_idle()

    def _heads(self) -> list[Job]:
        """Each conversation's active job, finished ones removed (the next one becomes active)."""
        heads = []
        for resident in self.residents:
            while resident.jobs:
                job = resident.jobs[0]
                job.poll()
                if job.phase() != "done":
                    heads.append(job)
                    break
                resident.jobs.popleft()
                resident.last_used = time.monotonic()
                self._waiting.discard(resident)
        return heads

    def _decode_step(self, jobs: list[Job]) -> bool:
        ready = [job for job in jobs if self._reserve(job, job.resident.cache.length + 1)]
        if not ready:
            return False
        for job in ready:
            self._waiting.discard(job.resident)
        tokens = [job.next_token() for job in ready]
        caches = [job.resident.cache for job in ready]
        try:
            logits = self.decode(tokens, caches)
        except Exception as exc:
            log.exception("batched decode failed")
            for job in ready:
                self.pool.clear(job.resident.cache)  # half-written: cannot be trusted
                job.fail(exc)
            return True
        for row, (job, token) in enumerate(zip(ready, tokens, strict=True)):
            job.resident.cache.keys.append(token)
            job.resident.last_used = time.monotonic()
            job.take_logits(logits[row])
        self._note("decode", [job.resident for job in ready])
        return True

    def _chunk(self, job: Job) -> Literal["ran", "waits", "failed"]:
        """Run one chunk unit of `job`."""
        resident = job.resident
        try:
            self._restore(resident)
            job.run_chunk()
        except PoolFull as exc:
            if not self._short(job, exc.needed):
                return "waits"
            return self._chunk(job)  # room was made: the retry finds the blocks free
        except KVBudgetExceeded as exc:
            job.fail(exc)
            return "failed"
        except Exception as exc:  # the model failed mid-forward: the cache cannot be trusted (the job logs it)
            self.pool.clear(resident.cache)
            job.fail(exc)
            return "failed"
        self._waiting.discard(resident)
        resident.last_used = time.monotonic()
        self._note("chunk", [resident])
        return "ran"

    def _reserve(self, job: Job, positions: int) -> bool:
        """Restore and reserve blocks for a decode row's next position; False when it must sit this step out."""
        try:
            self._restore(job.resident)
            self.pool.ensure(job.resident.cache, positions)
        except PoolFull as exc:
            return self._short(job, exc.needed) and self._reserve(job, positions)
        except KVBudgetExceeded as exc:
            job.fail(exc)
            return False
        return True

    def _short(self, job: Job, needed: int) -> bool:
        """`job` needs `needed` more blocks: make room from idle conversations; True if it now may retry."""
        if self._make_room(needed, keep=job.resident):
            return True
        if self.on_full == "error":
            job.fail(
                KVBudgetExceeded(
                    "The server's KV cache is full: this response cannot be served now. Try again shortly."
                )
            )
            return False
        self._waiting.add(job.resident)
        return False

    def _make_room(self, needed: int, keep: Resident, victims: list[Resident] | None = None) -> bool:
        """Move idle conversations' caches (least recently used first) out of the pool until `needed`
        blocks are free; True if they are."""
        if victims is None:
            victims = [r for r in self.residents if not r.jobs and r.cache.blocks and r is not keep]
        victims.sort(key=lambda resident: resident.last_used)
        for victim in victims:
            if self.pool.free_blocks >= needed:
                break
            self._evict(victim)
        return self.pool.free_blocks >= needed

    def _unblock(self) -> None:
        """Every job is waiting for blocks: the oldest waiting conversation takes those of the others."""
        waiting = sorted(self._waiting, key=lambda resident: resident.jobs[0].order if resident.jobs else 0)
        oldest, others = waiting[0], waiting[1:]
        self._make_room(self.pool.capacity, keep=oldest, victims=[r for r in others if r.cache.blocks])

    def _evict(self, resident: Resident) -> None:
        cache = resident.cache
        size = len(cache.blocks) * self.pool.bytes_per_block
        if self.host_budget is not None and self.host_bytes + size > self.host_budget:
            self.pool.clear(cache)  # dropped: the next request recomputes it
            log.info("kv cache dropped", resident=resident.id, bytes=size, host_bytes=self.host_bytes)
            return
        self.host_bytes += self.pool.offload(cache)
        log.info("kv cache offloaded", resident=resident.id, bytes=size)

    def _restore(self, resident: Resident) -> None:
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
            if not self._make_room(exc.needed, keep=resident):
                raise
            self.pool.restore(cache)
        self.host_bytes -= size

    def _offload_idle(self) -> None:
        if self.idle_offload is None:
            return
        now = time.monotonic()
        for resident in self.residents:
            idle = not resident.jobs and resident.cache.blocks and now - resident.last_used >= self.idle_offload
            if idle:
                self._evict(resident)

    def _note(self, kind: Literal["decode", "chunk"], residents: list[Resident]) -> None:
        if self._trace:
            self.schedule.append(ScheduleEntry(kind, tuple(resident.id for resident in residents)))


def _size(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()
