"""The ingress' engine: `RemoteEngine` serves the session core through a deployment handle to the engine replicas.

Each `RemoteSession` is one conversation's id on the replicas, with what the ingress keeps of it beside the
items: the `SessionMemory` folded from every `GenerationDone` and the `epoch` (generations ended). Every call
sends them, so any replica can take the conversation over (`replica.py`). A call that fails because its replica
is gone is tried again on another one while nothing of it has reached the caller (the router leaves a dead
replica out once Serve says so); a reply that loses its replica midway ends with a `ModelFailure` error, and the
next one rebuilds the cache elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import structlog
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
from ray.serve.exceptions import DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle, DeploymentResponseGenerator

from ..engine.base import (
    DeviceMemory,
    Engine,
    EngineHealth,
    EngineSession,
    EngineStats,
    FunctionSpec,
    Generation,
    GenerationDone,
    GenerationEvent,
    Message,
    SamplingParams,
    SessionMemory,
    Truncation,
)
from ..errors import ModelFailure
from .replica import EngineInfo, ReplicaReport

log = structlog.get_logger(__name__)

LOST = (ActorDiedError, ActorUnavailableError, RayActorError, DeploymentUnavailableError)
"""What a call raises when its replica is gone (died, killed, stopped) or none is running."""
RETRIES = 4
"""Tries of a call whose replica was lost before it answered anything."""
BACKOFF = 0.5
"""Seconds before the first retry; doubled each time."""

Stream = DeploymentResponseGenerator[GenerationEvent]
Reports = Callable[[], Sequence[ReplicaReport]]
"""The replicas' latest reports (`fleet.py`)."""


class RemoteEngine(Engine):
    """The engine replicas behind `handle`, as one `Engine`.

    Args:
        handle: the engine deployment's handle.
        info: the served model (`connect` asks a replica).
        reports: the replicas' latest reports, for `stats`, `device_memory` and `health`.
    """

    def __init__(self, handle: DeploymentHandle[Any], info: EngineInfo, reports: Reports) -> None:
        self._handle = handle
        self._reports = reports
        self.model_name = info.model_name
        self.max_context = info.max_context
        self.capabilities = info.capabilities

    @classmethod
    async def connect(cls, handle: DeploymentHandle[Any], reports: Reports) -> RemoteEngine:
        """The engine of a deployment, its model described by one of its replicas."""
        info: EngineInfo = await _retrying(lambda: _own_request(handle.describe))
        return cls(handle, info, reports)

    async def open_session(self, memory: SessionMemory | None = None) -> RemoteSession:
        return RemoteSession(self._handle, memory or SessionMemory())

    def stats(self) -> EngineStats | None:
        """The replicas' pools added up."""
        pools = [report.stats for report in self._reports() if report.stats is not None]
        if not pools:
            return None
        return EngineStats(
            block_size=pools[0].block_size,
            blocks_total=sum(pool.blocks_total for pool in pools),
            blocks_used=sum(pool.blocks_used for pool in pools),
            bytes_per_block=pools[0].bytes_per_block,
            conversations_resident=sum(pool.conversations_resident for pool in pools),
            conversations_offloaded=sum(pool.conversations_offloaded for pool in pools),
        )

    def device_memory(self) -> DeviceMemory | None:
        """The replicas' accelerators added up."""
        memories = [report.device_memory for report in self._reports() if report.device_memory is not None]
        if not memories:
            return None
        return DeviceMemory(
            allocated=sum(memory.allocated for memory in memories),
            reserved=sum(memory.reserved for memory in memories),
            total=sum(memory.total for memory in memories),
        )

    def health(self) -> EngineHealth:
        reports = self._reports()
        if not reports:
            return EngineHealth("degraded", "No engine replica has reported in the last seconds.")
        if not any(report.healthy for report in reports):
            return EngineHealth("degraded", f"No engine replica is healthy: {reports[0].reason}")
        return EngineHealth()

    async def close(self) -> None:
        """Nothing to free here: the replicas belong to Serve."""


class RemoteSession(EngineSession):
    """One conversation on the engine replicas (see the module's docstring)."""

    def __init__(self, handle: DeploymentHandle[Any], memory: SessionMemory) -> None:
        self.conversation_id = uuid.uuid4().hex
        self.memory = memory
        self.epoch = 0
        self._handle = handle
        self._stream = handle.options(stream=True)

    def generate(self, conversation: Sequence[Message], reply_key: str, params: SamplingParams) -> Generation:
        return RemoteGeneration(self, list(conversation), reply_key, params)

    async def prefill(
        self, conversation: Sequence[Message], tools: Sequence[FunctionSpec] = (), truncation: Truncation | None = None
    ) -> None:
        args = (self.conversation_id, self.epoch, self.memory, list(conversation), tuple(tools), truncation)
        try:
            await _retrying(lambda: _own_request(self._handle.prefill, *args))
        except Exception:  # a prefill never fails: the reply computes what it lacks
            log.warning("speculative prefill lost", conversation=self.conversation_id, exc_info=True)

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # a lost replica holds nothing to free
            await _own_request(self._handle.close, self.conversation_id)

    def cancel(self) -> None:
        task = asyncio.get_running_loop().create_task(self._cancel())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def _cancel(self) -> None:
        with contextlib.suppress(Exception):
            await _own_request(self._handle.cancel, self.conversation_id)

    def _ended(self, reply_key: str, done: GenerationDone) -> None:
        self.memory = self.memory.after(reply_key, done)
        self.epoch += 1


_background: set[asyncio.Task[None]] = set()


class RemoteGeneration(Generation):
    """A reply streamed from the replica holding its conversation."""

    def __init__(
        self, session: RemoteSession, conversation: list[Message], reply_key: str, params: SamplingParams
    ) -> None:
        self._session = session
        self._args = (session.conversation_id, session.epoch, session.memory, conversation, reply_key, params)
        self._reply_key = reply_key
        self._cancelled = False
        self._recancelled = False
        self._done = False

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        session = self._session
        delay = BACKOFF
        for attempt in range(RETRIES):
            received = False
            try:
                stream = cast(
                    DeploymentResponseGenerator[GenerationEvent], _own_request(session._stream.generate, *self._args)
                )
                async for event in stream:
                    received = True
                    if isinstance(event, GenerationDone):
                        self._done = True
                        session._ended(self._reply_key, event)
                    yield event
                    # A cancel sent before the stream reached its replica found nothing to stop there: once more.
                    if self._cancelled and not self._recancelled and not self._done:
                        self._recancelled = True
                        session.cancel()
                return
            except LOST as exc:
                if received or self._cancelled or attempt == RETRIES - 1:
                    log.warning("reply lost with its replica", conversation=session.conversation_id, error=str(exc))
                    done = GenerationDone("error", error=ModelFailure(LOST_MESSAGE), window=session.memory.window)
                    self._done = True
                    session._ended(self._reply_key, done)
                    yield done
                    return
                log.info("replica lost, trying another", conversation=session.conversation_id, attempt=attempt + 1)
                await asyncio.sleep(delay)
                delay *= 2

    def cancel(self) -> None:
        if not (self._cancelled or self._done):  # an ended reply has nothing to stop: no call
            self._cancelled = True
            self._session.cancel()


LOST_MESSAGE = (
    "The model replica serving this conversation was lost; the conversation is kept, and the next response "
    "rebuilds it on another replica."
)


async def _retrying(call: Callable[[], Any]) -> Any:
    """`await call()`, tried again on another replica while its replica is lost."""
    delay = BACKOFF
    for attempt in range(RETRIES):
        try:
            return await call()
        except LOST:
            if attempt == RETRIES - 1:
                raise
            await asyncio.sleep(delay)
            delay *= 2


def _own_request(method: Any, *args: Any) -> Any:
    """`method.remote(*args)` outside the websocket request's Serve context, so that the call gets a request id of
    its own: Serve's router hands a chosen replica to the pending request of that id, so two calls of one
    conversation routed at once under the websocket's id would leave one of them unrouted forever."""
    return contextvars.Context().run(method.remote, *args)
