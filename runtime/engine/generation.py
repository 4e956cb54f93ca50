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


class _Run:
    """Consecutive deltas of one kind (text, or one call's arguments) not taken yet, kept as pieces and joined
    once when taken: joining at every push would cost the square of a lagging consumer's backlog."""

    def __init__(self, first: TextDelta | ToolCallDelta) -> None:
        self.first = first
        self.texts = [first.text if isinstance(first, TextDelta) else first.arguments]
        self.token_ids: list[int] = list(first.token_ids) if isinstance(first, TextDelta) else []

    def takes(self, event: GenerationEvent) -> bool:
        if isinstance(self.first, TextDelta):
            return isinstance(event, TextDelta)
        return isinstance(event, ToolCallDelta) and event.index == self.first.index

    def add(self, event: TextDelta | ToolCallDelta) -> None:
        if isinstance(event, TextDelta):
            self.texts.append(event.text)
            self.token_ids.extend(event.token_ids)
        else:
            self.texts.append(event.arguments)

    def joined(self) -> TextDelta | ToolCallDelta:
        if isinstance(self.first, TextDelta):
            return TextDelta("".join(self.texts), tuple(self.token_ids))
        return ToolCallDelta(self.first.index, self.first.name, "".join(self.texts))


class StreamedGeneration(Generation):
    """The event-loop side of a generation: the device thread pushes, one consumer iterates.

    Bounded: consecutive deltas (of text, or of one call's arguments) that the consumer has not taken yet
    merge into one.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[GenerationEvent | _Run] = []
        self._ready = asyncio.Event()
        self.cancelled = threading.Event()

    def push_threadsafe(self, event: GenerationEvent) -> None:
        """Called from the device thread."""
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody consumes the events
            self._loop.call_soon_threadsafe(self._push, event)

    def _push(self, event: GenerationEvent) -> None:
        last = self._pending[-1] if self._pending else None
        if isinstance(last, _Run) and last.takes(event):
            last.add(event)  # type: ignore[arg-type]  # `takes` checked its kind
        elif isinstance(event, TextDelta | ToolCallDelta):
            self._pending.append(_Run(event))
        else:
            self._pending.append(event)
        self._ready.set()

    def cancel(self) -> None:
        self.cancelled.set()

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            while True:
                await self._ready.wait()
                pending, self._pending = self._pending, []
                self._ready.clear()
                for taken in pending:
                    event = taken.joined() if isinstance(taken, _Run) else taken
                    yield event
                    if isinstance(event, GenerationDone):
                        return
        finally:
            # A consumer that stops early (cancelled task, closed connection) stops the device work.
            self.cancel()
