"""The device loop: one thread runs every conversation's model work, in steps.

Each conversation resident on the device (`Resident`) has a queue of jobs (a reply, a speculative
prefill) that run one after another, in the order they were asked for; only the first is active. An
active job is in one of two phases. In its *chunk* phase it needs a prefill chunk: the host work of a
unit (rendering the conversation and planning the prefill, encoding the audio clips the chunk holds)
and then some of its positions through the model, or the tokens a grammar forced. In its *decode*
phase it has one token to feed and wants the next token's logits.

Every step is one forward (`ModelRunner.step`): one row for each decoding job, and chunks of at most
`prefill_budget` positions in all — a live grammar feed first, then the replies' prefills, oldest
first, then speculative work, which joins no step that runs a reply's prefill (it would delay that
reply's first token) and, while the device has other work, waits `settle` seconds after it was asked for
(speech that pauses briefly asks for a read-ahead that the words after the pause make stale); each job's
chunk takes what the budget has left (a `Budget`). Encoding
audio draws on the same budget, priced in positions of equal arithmetic, a part of the encoder at a
time: a clip too long for one step is encoded over several, each with the others' decode rows. So a
long prefill never freezes the other streams: they advance by a token with every step of it, and no
step holds more than one budget of prefill work (plus, at most, one part of the encoder begun within
it). Prefills that arrive together share steps (the weights are read once for all of
them, which a burst of new turns feels most). Conversations join the decode rows when their prefill
ends and leave them when their reply does.

Memory: every position lives in the paged pool. When a chunk or a decode row needs blocks that are not
free, idle conversations' caches leave the pool first (`Residency`); if that is not enough the job
either fails with `KVBudgetExceeded` (`on_full="error"`) or waits (`on_full="wait"`) while the others go
on — and, should nothing be able to go on, the caches of all but the oldest waiting conversation leave
the pool so that it can proceed. A job restores its conversation's cache, bit for bit, before using it.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

import structlog
import torch

from ...errors import KVBudgetExceeded
from .kv_pool import KVPool, PoolFull, SequenceCache
from .residency import Residency, Resident
from .runner import Chunk

log = structlog.get_logger(__name__)
T = TypeVar("T")
OnFull = Literal["wait", "error"]
Phase = Literal["chunk", "decode", "done"]
_orders = itertools.count(1)
_TICK = 0.5  # seconds between idle checks while nothing runs
SETTLE = 0.2  # seconds: pauses within a phrase are shorter (espeak-ng's measured 32-128 ms)


class StepFn(Protocol):
    def __call__(
        self, tokens: Sequence[int], caches: Sequence[SequenceCache], chunks: Sequence[Chunk] = ()
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One forward: a token after each cache's last position, and the chunks (see `ModelRunner.step`)."""
        ...


class Budget:
    """The prefill work a step has left room for, in positions: chunk positions, and audio encoding priced in
    positions of equal arithmetic. Work starts while any room is left, so it may end below zero."""

    def __init__(self, positions: int) -> None:
        self.left = positions

    def spend(self, positions: int) -> None:
        self.left -= positions


class Job(ABC):
    """Model work for one conversation, run step by step on the device thread."""

    resident: Resident
    order: int = 0
    """Set when the job is submitted: first come, first served."""
    submitted: float = 0.0
    """When the job was submitted (`time.monotonic()`)."""

    @abstractmethod
    def phase(self) -> Phase:
        """What the job needs next: a chunk, a decode row, or nothing (finished)."""

    @abstractmethod
    def prepare_chunk(self, budget: Budget) -> Chunk | None:
        """The chunk phase's host work (render, plan, encode audio) and the chunk it yields, its blocks reserved;
        both spend from `budget`, the chunk only what is left. None when the job needs no forward this time
        (it ended, or the step's room went to encoding audio).

        Raises:
            PoolFull: the chunk's positions need blocks that are not free (retried as it is).
        """

    @abstractmethod
    def take_chunk(self, logits: torch.Tensor) -> None:
        """The chunk ran (its positions are in the pool); `logits` follow its last position."""

    def urgency(self) -> int:
        """The chunk's place in line, before its arrival: 0 for tokens a grammar forced in a live reply,
        1 for a reply's prefill (a user waits for it), 2 for work ahead of a request (a speculative
        prefill, which gives way to every reply)."""
        return 1

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
    """One step: the conversations that decoded a token in it, those whose chunks it ran, how many prefill
    positions those chunks held, and the audio encoded in it (in positions of equal arithmetic)."""

    decoded: tuple[int, ...]
    chunks: tuple[int, ...]
    prefill: int
    audio: int = 0


class Scheduler:
    """The device thread and its loop (see the module docstring).

    Args:
        pool: the paged KV pool every conversation's cache lives in.
        step: the forward of a step.
        prefill_budget: prefill positions a step holds at most, from one conversation or several (the longest
            a live stream waits between two of its steps is one step of this many).
        on_full: what a job that needs blocks that are not free does: wait, or fail.
        idle_offload: seconds after which an idle conversation's cache moves to host memory (None: never).
        host_budget: bytes of offloaded caches kept in host memory; past it, victims are dropped.
        trace: keep the last `trace` schedule entries (for tests; 0: none).
        settle: seconds speculative work waits after it was asked for while the device has other work.
    """

    def __init__(
        self,
        pool: KVPool,
        step: StepFn,
        *,
        prefill_budget: int,
        on_full: OnFull = "wait",
        idle_offload: float | None = None,
        host_budget: int | None = None,
        trace: int = 0,
        settle: float = SETTLE,
        name: str = "aural-device",
    ) -> None:
        self.pool = pool
        self.settle = settle
        self.step = step
        self.prefill_budget = prefill_budget
        self.on_full = on_full
        self.residency = Residency(pool, idle_offload=idle_offload, host_budget=host_budget)
        self.schedule: deque[ScheduleEntry] = deque(maxlen=trace or 1)
        self._trace = trace > 0
        self._inbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._waiting: set[Resident] = set()  # their jobs wait for blocks
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def residents(self) -> list[Resident]:
        return self.residency.residents

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
        self.residency.remove(resident)
        self._waiting.discard(resident)

    def _admit(self, job: Job) -> None:
        job.order = next(_orders)
        job.submitted = time.monotonic()
        if job.resident.closed:
            job.poll()
            return
        job.resident.jobs.append(job)
        job.resident.last_used = time.monotonic()

    @torch.inference_mode()
    def _run(self) -> None:
        while not self._stopped:
            self._take_inbox(block=not any(resident.jobs for resident in self.residents))
            if self._stopped:
                break
            try:
                self._step()
            except Exception as exc:  # a bug: end the active jobs rather than retry them forever
                log.exception("device loop step failed")
                self._fail(self._heads(), exc)

    def _take_inbox(self, *, block: bool) -> None:
        timeout = _TICK if block and self.residency.idle_offload is not None else None
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
        heads = self._heads()
        rows = [job for job in heads if job.phase() == "decode" and self._reserve(job)]
        chunking = sorted((job for job in heads if job.phase() == "chunk"), key=lambda job: (job.urgency(), job.order))
        chunks: list[tuple[Job, Chunk]] = []
        progressed, budget, replying = False, Budget(self.prefill_budget), False
        settled = time.monotonic() - self.settle
        for job in chunking:
            if budget.left <= 0 or (replying and job.urgency() > 1):
                break  # work ahead of a request would delay the first token of a reply this step prefills
            if job.urgency() > 1 and (rows or chunks) and job.submitted > settled:
                continue  # the device is busy: work ahead of a request waits until it has settled
            outcome = self._prepare(job, budget)
            replying |= job.urgency() <= 1
            if isinstance(outcome, Chunk):
                chunks.append((job, outcome))
                continue
            progressed |= outcome == "done"
            if outcome == "waits" and job.urgency() > 0:
                break  # first come, first served: a younger prefill does not overtake a waiting one
        if rows or chunks:
            self._forward(rows, chunks)
            progressed = True
        if self._trace and (rows or budget.left < self.prefill_budget):
            positions = sum(chunk.stop - chunk.start for _, chunk in chunks)
            self.schedule.append(
                ScheduleEntry(
                    tuple(job.resident.id for job in rows),
                    tuple(job.resident.id for job, _ in chunks),
                    positions,
                    self.prefill_budget - budget.left - positions,
                )
            )
        if not progressed and self._waiting:
            self._unblock()
        self.residency.offload_idle()

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

    def _prepare(self, job: Job, budget: Budget) -> Chunk | Literal["done", "waits"]:
        """A job's chunk of at most `budget` positions, or what came of trying: host work only, or the job
        ended ("done"); no room ("waits")."""
        resident = job.resident
        try:
            self.residency.restore(resident)
            chunk = job.prepare_chunk(budget)
        except PoolFull as exc:
            if not self._short(job, exc.needed):
                return "waits"
            return self._prepare(job, budget)  # room was made: the retry finds the blocks free
        except KVBudgetExceeded as exc:
            job.fail(exc)
            return "done"
        except Exception as exc:  # the audio encoder or the host work failed
            self._fail([job], exc)
            return "done"
        self._waiting.discard(resident)
        return chunk if chunk is not None else "done"

    def _forward(self, rows: list[Job], chunks: list[tuple[Job, Chunk]]) -> None:
        tokens = [job.next_token() for job in rows]
        try:
            logits, chunk_logits = self.step(
                tokens, [job.resident.cache for job in rows], [chunk for _, chunk in chunks]
            )
        except Exception as exc:
            log.exception("model step failed")
            self._fail([*rows, *(job for job, _ in chunks)], exc)
            return
        now = time.monotonic()
        for row, (job, token) in enumerate(zip(rows, tokens, strict=True)):
            assert logits is not None
            job.resident.cache.keys.append(token)
            job.resident.last_used = now
            self._waiting.discard(job.resident)
            job.take_logits(logits[row])
        for index, (job, _) in enumerate(chunks):
            assert chunk_logits is not None
            job.resident.last_used = now
            job.take_chunk(chunk_logits[index])

    def _fail(self, jobs: Sequence[Job], error: Exception) -> None:
        """The model failed mid-forward for these jobs: their caches cannot be trusted."""
        for job in jobs:
            self.pool.clear(job.resident.cache)
            job.fail(error)

    def _reserve(self, job: Job) -> bool:
        """Restore and reserve blocks for a decode row's next position; False when it sits this step out."""
        try:
            self.residency.restore(job.resident)
            self.pool.ensure(job.resident.cache, job.resident.cache.length + 1)
        except PoolFull as exc:
            return self._short(job, exc.needed) and self._reserve(job)
        except KVBudgetExceeded as exc:
            job.fail(exc)
            return False
        return True

    def _short(self, job: Job, needed: int) -> bool:
        """`job` needs `needed` free blocks: make room from idle conversations; True if it now may retry."""
        if self.residency.make_room(needed, keep=job.resident):
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

    def _unblock(self) -> None:
        """Every job is waiting for blocks: the oldest waiting conversation takes those of the others."""
        waiting = sorted(self._waiting, key=lambda resident: resident.jobs[0].order if resident.jobs else 0)
        oldest, others = waiting[0], waiting[1:]
        self.residency.make_room(self.pool.capacity, keep=oldest, victims=[r for r in others if r.cache.blocks])
