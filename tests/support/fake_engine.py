"""A scripted, recording engine for driver and server tests, without torch (LiveKit's fake session, for Aural).

Each reply is a `Reply` script: the text pieces and call events its generation yields, in order, then how it
ends (or an exception, as a bug in an engine would raise). Tests queue scripts with `FakeEngine.script`; an
unscripted reply is the engine's `default` (one that says `DEFAULT_TEXT`). Every request is recorded
(`FakeEngine.calls`), and so is what became of each prefill and each session, unless `record=False` (a soak's
engine holds nothing once a conversation ends). The engine interface's promises are kept: `cancel()` ends a
generation as `cancelled` before its next event; closing a session cancels its generation; a prefill that a
later request of the same session supersedes (another prefill, a `generate`) stops at its next step.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from aural.runtime.engine.base import (
    SAMPLE_RATE,
    Engine,
    EngineHealth,
    EngineSession,
    FinishReason,
    FunctionSpec,
    Generation,
    GenerationDone,
    GenerationEvent,
    Message,
    ModelCapabilities,
    SamplingParams,
    SessionMemory,
    TextDelta,
    TokenUsage,
    ToolCallDelta,
    ToolCallDone,
    Truncation,
)
from aural.runtime.errors import EngineError

DEFAULT_TEXT = "Hello there."
PrefillOutcome = Literal["done", "superseded", "cancelled"]
CAPABILITIES = ModelCapabilities(clip_samples=30 * SAMPLE_RATE, context_window=8192, check_schema=lambda schema: None)
"""A model like Qwen2-Audio (30 s clips, an 8k context) that can enforce any schema."""


@dataclass(frozen=True)
class Reply:
    """One scripted generation.

    Args:
        events: text pieces (each a `TextDelta`) and call events, in order.
        reason: how it ends after them.
        error: why, when `reason` is "error".
        raises: raised by the generation after its events instead of ending (a bug in an engine).
        endless: after its events, text goes on ("x" every `pause` seconds) until it is cancelled.
        pause: seconds between two events.
    """

    events: Sequence[str | ToolCallDelta | ToolCallDone] = (DEFAULT_TEXT,)
    reason: FinishReason = "stop"
    error: EngineError | None = None
    raises: Exception | None = None
    endless: bool = False
    pause: float = 0.0


@dataclass(frozen=True)
class Call:
    """A request the engine got: its kind, the session it came to (by opening order) and what it asked for."""

    kind: Literal["open", "generate", "prefill", "close"]
    session: int
    conversation: tuple[Message, ...] = ()
    reply_key: str = ""
    params: SamplingParams | None = None
    tools: tuple[FunctionSpec, ...] = ()


class FakeEngine(Engine):
    """The engine of driver and server tests."""

    def __init__(
        self,
        *,
        model_name: str = "fake",
        capabilities: ModelCapabilities = CAPABILITIES,
        health: EngineHealth | None = None,
        default: Reply | None = None,
        record: bool = True,
    ) -> None:
        self.model_name = model_name
        self.max_context = capabilities.context_window
        self.capabilities = capabilities
        self.state = health or EngineHealth()
        self.calls: list[Call] = []
        self.prefills: list[tuple[Call, PrefillOutcome]] = []
        self.prefill_step = 0.0
        """Seconds each step of a prefill takes (0: it only yields to the loop)."""
        self.sessions: list[FakeSession] = []
        self.closed = False
        self.record = record
        self._default = default or Reply()
        self._opened = 0
        self._replies: deque[Reply] = deque()

    def script(self, *replies: Reply) -> None:
        """Queue the next replies, in order."""
        self._replies.extend(replies)

    def of_kind(self, kind: str) -> list[Call]:
        """The recorded requests of one kind."""
        return [call for call in self.calls if call.kind == kind]

    def next_reply(self) -> Reply:
        return self._replies.popleft() if self._replies else self._default

    def recorded(self, call: Call) -> None:
        if self.record:
            self.calls.append(call)

    def settled(self, prefill: Call, outcome: PrefillOutcome) -> None:
        if self.record:
            self.prefills.append((prefill, outcome))

    def health(self) -> EngineHealth:
        return self.state

    async def open_session(self, memory: SessionMemory | None = None) -> FakeSession:
        session = FakeSession(self, self._opened, memory or SessionMemory())
        self._opened += 1
        if self.record:
            self.sessions.append(session)
        self.recorded(Call("open", session.index))
        return session

    async def close(self) -> None:
        self.closed = True


class FakeSession(EngineSession):
    """One conversation on the fake engine; `memory` is the one it was opened with."""

    PREFILL_STEPS = 3
    """Steps of a prefill (an audio clip each, in the real engine); a newer request stops it between two."""

    def __init__(self, engine: FakeEngine, index: int, memory: SessionMemory) -> None:
        self.engine = engine
        self.index = index
        self.memory = memory
        self.closed = False
        self.wanted = 0  # requests so far: a prefill runs only while it is the latest
        self.generations: list[FakeGeneration] = []

    def generate(self, conversation: Sequence[Message], reply_key: str, params: SamplingParams) -> FakeGeneration:
        self.wanted += 1
        self.engine.recorded(Call("generate", self.index, tuple(conversation), reply_key, params))
        generation = FakeGeneration(self, self.engine.next_reply(), len(conversation))
        self.generations.append(generation)
        return generation

    async def prefill(
        self, conversation: Sequence[Message], tools: Sequence[FunctionSpec] = (), truncation: Truncation | None = None
    ) -> None:
        self.wanted += 1
        ticket = self.wanted
        call = Call("prefill", self.index, tuple(conversation), tools=tuple(tools))
        self.engine.recorded(call)
        for _ in range(self.PREFILL_STEPS):
            try:
                await asyncio.sleep(self.engine.prefill_step)
            except asyncio.CancelledError:
                self.engine.settled(call, "cancelled")
                raise
            if self.closed or self.wanted != ticket:
                self.engine.settled(call, "superseded")
                return
        self.engine.settled(call, "done")

    async def close(self) -> None:
        self.closed = True
        self.engine.recorded(Call("close", self.index))
        for generation in self.generations:
            generation.cancel()


@dataclass
class FakeGeneration(Generation):
    """A scripted reply as it runs."""

    session: FakeSession
    reply: Reply
    prompt: int
    cancelled: bool = False
    yielded: list[GenerationEvent] = field(default_factory=list)

    def cancel(self) -> None:
        self.cancelled = True

    def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[GenerationEvent]:
        events = list(self.reply.events)
        while events or self.reply.endless:
            await asyncio.sleep(self.reply.pause)
            if self.cancelled or self.session.closed:
                yield self._end("cancelled")
                return
            event = events.pop(0) if events else "x"
            yield self._out(TextDelta(event, (len(self.yielded),)) if isinstance(event, str) else event)
        if self.reply.raises is not None:
            raise self.reply.raises
        yield self._end(self.reply.reason, self.reply.error)

    def _out(self, event: GenerationEvent) -> GenerationEvent:
        self.yielded.append(event)
        return event

    def _end(self, reason: FinishReason, error: EngineError | None = None) -> GenerationDone:
        usage = TokenUsage(input_tokens=10 * self.prompt, output_tokens=len(self.yielded))
        ids = tuple(token for event in self.yielded if isinstance(event, TextDelta) for token in event.token_ids)
        return GenerationDone(reason, usage, error, reply_ids=ids, window=self.session.memory.window)
