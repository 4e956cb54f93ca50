"""The event-loop side of a generation: the device thread pushes events, one consumer iterates.

Bounded: consecutive deltas (of text, or of one call's arguments) that the consumer has not taken yet
merge into one, so a lagging client never makes the engine queue without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

from .base import Generation, GenerationDone, GenerationEvent, TextDelta, ToolCallDelta


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
