"""The device worker: one thread that owns the model and runs every model operation.

Work comes as jobs whose `step()` does one bounded piece (a prefill, one decode step) and says whether
more remains. Unfinished jobs go to the back of the queue, so concurrent conversations take turns
token by token and none waits for another's whole reply. The event loop never runs model code.

Jobs of one conversation share its cache, so they must not take turns with each other: each takes
the conversation's `StateLock` for as long as it runs, and a job that finds it taken passes its turn.
The queue keeps its order as it rotates, so a conversation's jobs run one after another, in the
order they were queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Protocol, TypeVar

import structlog

from .base import Generation, GenerationDone, GenerationEvent, TextDelta, ToolCallDelta

log = structlog.get_logger(__name__)
T = TypeVar("T")


class Job(Protocol):
    def step(self) -> bool:
        """Do one bounded piece of work; return True if the job has more to do."""


class StateLock:
    """Exclusive use of one conversation's state by one job, across all of that job's steps.

    Touched only on the device thread, so it needs no synchronisation.
    """

    def __init__(self) -> None:
        self._holder: object | None = None

    def acquire(self, job: object) -> bool:
        """Take the lock for `job` (or keep it); False while another job holds it."""
        if self._holder is None:
            self._holder = job
        return self._holder is job

    def release(self, job: object) -> None:
        """Give the lock back, if `job` holds it."""
        if self._holder is job:
            self._holder = None


class _Call:
    """A one-step job that runs a function and resolves a future on the event loop."""

    def __init__(
        self, fn: Callable[[], object], loop: asyncio.AbstractEventLoop, lock: StateLock | None = None
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.lock = lock
        self.future: asyncio.Future[object] = loop.create_future()

    def _settle(self, result: object, error: BaseException | None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)

    def step(self) -> bool:
        if self.lock is not None and not self.lock.acquire(self):
            return True  # another job of the same conversation runs: wait for it
        try:
            result, error = self.fn(), None
        except Exception as exc:  # handed to the awaiting coroutine
            result, error = None, exc
        finally:
            if self.lock is not None:
                self.lock.release(self)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody awaits the result
            self.loop.call_soon_threadsafe(self._settle, result, error)
        return False


class DeviceWorker:
    """A thread running jobs round-robin."""

    def __init__(self, name: str = "aural-device") -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                more = job.step()
            except Exception:
                log.exception("device job failed")
                more = False
            if more:
                self._jobs.put(job)

    def start(self, job: Job) -> None:
        """Queue a job; it runs step by step until it says it is done."""
        self._jobs.put(job)

    async def call(self, fn: Callable[[], T], lock: StateLock | None = None) -> T:
        """Run `fn` on the device thread and return its result (or raise its exception).

        With `lock`, `fn` runs once no other job holds it (it waits for a running generation).
        """
        call = _Call(fn, asyncio.get_running_loop(), lock)
        self._jobs.put(call)
        return await call.future  # type: ignore[return-value]

    def shutdown(self) -> None:
        """Finish the queued jobs' current steps and stop the thread."""
        self._jobs.put(None)
        self._thread.join(timeout=10)


class StreamedGeneration(Generation):
    """The event-loop side of a generation: the device thread pushes, one consumer iterates.

    Bounded: consecutive deltas (of text, or of one call's arguments) that the consumer has not taken yet
    merge into one.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[GenerationEvent] = []
        self._ready = asyncio.Event()
        self.cancelled = threading.Event()

    def push_threadsafe(self, event: GenerationEvent) -> None:
        """Called from the device thread."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody consumes the events
            self._loop.call_soon_threadsafe(self._push, event)

    def _push(self, event: GenerationEvent) -> None:
        last = self._pending[-1] if self._pending else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta):
            self._pending[-1] = TextDelta(last.text + event.text, last.token_ids + event.token_ids)
        elif isinstance(event, ToolCallDelta) and isinstance(last, ToolCallDelta) and last.index == event.index:
            self._pending[-1] = ToolCallDelta(event.index, event.name, last.arguments + event.arguments)
        else:
            self._pending.append(event)
        self._ready.set()

    def cancel(self) -> None:
        self.cancelled.set()

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            while True:
                await self._ready.wait()
                events, self._pending = self._pending, []
                self._ready.clear()
                for event in events:
                    yield event
                    if isinstance(event, GenerationDone):
                        return
        finally:
            # A consumer that stops early (cancelled task, closed connection) stops the device work.
            self.cancel()
