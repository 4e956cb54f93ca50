"""An engine replica: one model and its KV pool, holding the engine sessions of the conversations routed to it.

The ingress names a conversation by an id and, with every call, sends what its own copy of the conversation
says: the messages, the `SessionMemory` (its replies' token ids, its truncation window) and its `epoch` (how many
generations of the conversation have ended). A replica that holds the conversation at that epoch works on the
cache it has; one that does not (a new conversation, one moved here from a lost or drained replica, or one
that came back after replies generated elsewhere) opens a session from the memory, which rebuilds the cache
token for token at the first request. So a replica's state is only ever a cache: losing it loses no data.

The calls (`generate`, `prefill`, `cancel`, `close`) take the conversation id first: the router (`router.py`)
reads it there. Conversations whose ingress vanished without closing them are closed after `idle_close`
seconds without a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from ..engine.base import (
    DeviceMemory,
    Engine,
    EngineSession,
    EngineStats,
    FunctionSpec,
    Generation,
    GenerationDone,
    GenerationEvent,
    Message,
    ModelCapabilities,
    SamplingParams,
    SessionMemory,
    Truncation,
)

log = structlog.get_logger(__name__)

IDLE_CLOSE = 3600.0
"""Seconds without a call after which a replica closes a conversation's session (its ingress is gone)."""
SWEEP_PERIOD = 30.0
"""Seconds between two sweeps for idle sessions."""


@dataclass(frozen=True)
class EngineLoader:
    """How a replica loads its engine: `TransformersEngine.load(model, **options)` (picklable, so that Serve can
    hand it to replicas on any machine)."""

    model: str = "tiny"
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Engine:
        from ..engine.qwen2_audio.engine import TransformersEngine  # torch, in the replica's process only

        return TransformersEngine.load(self.model, **self.options)


@dataclass(frozen=True)
class EngineInfo:
    """What the ingress needs of the served model, asked once (`RemoteEngine.connect`)."""

    model_name: str
    max_context: int
    capabilities: ModelCapabilities


@dataclass(frozen=True)
class ReplicaReport:
    """One replica's figures, for the ingress' `/healthz` and `/metrics` and for routing."""

    replica: str
    conversations: int
    stats: EngineStats | None
    device_memory: DeviceMemory | None
    healthy: bool
    reason: str | None
    time: float


@dataclass
class _Held:
    session: EngineSession
    epoch: int
    used: float
    generation: Generation | None = None


class EngineReplica:
    """The engine deployment's class (`deploy.py` wraps it in `serve.deployment`).

    Args:
        loader: loads the engine, in this process.
        idle_close: seconds without a call after which a conversation's session is closed.
    """

    def __init__(self, loader: Callable[[], Engine], idle_close: float = IDLE_CLOSE) -> None:
        self._engine = loader()
        self._idle_close = idle_close
        self._held: dict[str, _Held] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._id = _replica_id()

    def describe(self) -> EngineInfo:
        engine = self._engine
        return EngineInfo(engine.model_name, engine.max_context, engine.capabilities)

    async def generate(
        self,
        conversation_id: str,
        epoch: int,
        memory: SessionMemory,
        conversation: Sequence[Message],
        reply_key: str,
        params: SamplingParams,
    ) -> AsyncIterator[GenerationEvent]:
        """The events of a reply, as `EngineSession.generate` gives them (the stream of a streaming handle)."""
        held = await self._hold(conversation_id, epoch, memory)
        generation = held.session.generate(conversation, reply_key, params)
        held.generation = generation
        ended = False
        try:
            async for event in generation:
                if isinstance(event, GenerationDone):
                    held.epoch, ended = epoch + 1, True
                yield event
        finally:
            if held.generation is generation:
                held.generation = None
            if not ended:  # the caller went away (its stream cancelled): stop decoding for it
                generation.cancel()
            held.used = time.monotonic()

    async def prefill(
        self,
        conversation_id: str,
        epoch: int,
        memory: SessionMemory,
        conversation: Sequence[Message],
        tools: Sequence[FunctionSpec],
        truncation: Truncation | None,
    ) -> None:
        """`EngineSession.prefill` of the conversation's session."""
        held = await self._hold(conversation_id, epoch, memory)
        await held.session.prefill(conversation, tools, truncation)

    async def cancel(self, conversation_id: str) -> None:
        """Stop the conversation's running reply at its next step (its stream then ends `cancelled`)."""
        held = self._held.get(conversation_id)
        if held is not None and held.generation is not None:
            held.generation.cancel()

    async def close(self, conversation_id: str) -> None:
        """Free the conversation's cache here."""
        held = self._held.pop(conversation_id, None)
        self._locks.pop(conversation_id, None)
        if held is not None:
            await held.session.close()

    def report(self) -> ReplicaReport:
        engine = self._engine
        health = engine.health()
        return ReplicaReport(
            self._id,
            len(self._held),
            engine.stats(),
            engine.device_memory(),
            health.status == "ok",
            health.reason,
            time.time(),
        )

    def record_routing_stats(self) -> dict[str, Any]:
        """Serve's hook: what the router reads of this replica (`router.py`)."""
        stats = self._engine.stats()
        return {"blocks_free": stats.blocks_free if stats else 0, "conversations": len(self._held), "time": time.time()}

    def record_autoscaling_stats(self) -> dict[str, float]:
        """Serve's hook: what the autoscaling policy (`deploy.scale_on_conversations`) reads of this replica."""
        return {"conversations": float(len(self._held))}

    def check_health(self) -> None:
        """Serve's hook: a degraded engine (its device thread died) makes Serve replace this replica."""
        health = self._engine.health()
        if health.status != "ok":
            raise RuntimeError(health.reason or "the engine is degraded")

    async def _hold(self, conversation_id: str, epoch: int, memory: SessionMemory) -> _Held:
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())
        async with self._locks.setdefault(conversation_id, asyncio.Lock()):
            held = self._held.get(conversation_id)
            if held is not None and held.epoch != epoch:  # replies were generated elsewhere since: start afresh
                log.info("conversation came back", conversation=conversation_id, held=held.epoch, epoch=epoch)
                del self._held[conversation_id]
                await held.session.close()
                held = None
            if held is None:
                session = await self._engine.open_session(memory)
                held = self._held[conversation_id] = _Held(session, epoch, time.monotonic())
            held.used = time.monotonic()
            return held

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_PERIOD, self._idle_close))
            now = time.monotonic()
            for conversation_id, held in list(self._held.items()):
                if held.generation is None and now - held.used > self._idle_close:
                    log.info("idle conversation closed", conversation=conversation_id)
                    with contextlib.suppress(Exception):
                        await self.close(conversation_id)

    async def shutdown(self) -> None:
        """Close every session and the engine (Serve calls `__del__` when it stops the replica)."""
        for conversation_id in list(self._held):
            with contextlib.suppress(Exception):
                await self.close(conversation_id)
        await self._engine.close()


def _replica_id() -> str:
    """This replica's id in Serve (a process id outside Serve, in tests)."""
    try:
        from ray import serve

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # not in a Serve replica
        import os

        return f"pid-{os.getpid()}"
