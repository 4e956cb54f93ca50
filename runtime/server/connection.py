"""The per-connection driver: websocket frames ↔ conversation session ↔ engine.

It only moves data. Decoded client events go to the session; the session's server events go out in
order through one send lock; its engine commands start or cancel the generation task, whose deltas
flow back through the session. When the client lags, the engine merges pending deltas, so nothing
queues without bound. A dropped connection cancels the generation and frees the engine session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import structlog
from aiohttp import WSMsgType, web

from aural.protocols import decode_client_event, encode_event
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.server_events import ServerEventBase

from ..engine.base import Engine, EngineSession, Generation, GenerationDone, TextDelta
from ..session.session import CancelResponse, ConversationSession, Output, StartResponse, error_event

log = structlog.get_logger(__name__)


class ConnectionDriver:
    """Runs one websocket conversation to its end."""

    def __init__(self, ws: web.WebSocketResponse, engine: Engine, session: ConversationSession) -> None:
        self._ws = ws
        self._engine = engine
        self._session = session
        self._engine_session: EngineSession | None = None
        self._send_lock = asyncio.Lock()
        self._generation: Generation | None = None
        self._task: asyncio.Task[None] | None = None
        self._log = log.bind(session=session.id)

    async def run(self) -> None:
        """Serve until the client closes the socket."""
        self._engine_session = await self._engine.open_session()
        self._log.info("session opened")
        try:
            await self._emit(self._session.start())
            async for message in self._ws:
                if message.type == WSMsgType.TEXT:
                    await self._receive(message.data)
                elif message.type == WSMsgType.BINARY:
                    await self._fail(ErrorCode.INVALID_EVENT, "Events are JSON text messages, not binary ones.")
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            await self._shutdown()
            self._log.info("session closed")

    async def _receive(self, data: str) -> None:
        try:
            event = decode_client_event(data)
        except ProtocolError as exc:
            await self._send(error_event(exc))
            return
        try:
            outputs = self._session.handle(event)
        except Exception:  # a bug must cost one event, never the server or the conversation
            self._log.exception("event failed", event_type=event.type)
            await self._fail(ErrorCode.SERVER_ERROR, "The server failed on this event.", event.event_id)
            return
        await self._emit(outputs)

    async def _fail(self, code: ErrorCode, message: str, event_id: str | None = None) -> None:
        error = ProtocolError(code, message, event_id=event_id)
        if code is ErrorCode.SERVER_ERROR:
            error.error_type = "server_error"
        await self._send(error_event(error))

    async def _emit(self, outputs: Iterable[Output]) -> None:
        for output in outputs:
            if isinstance(output, StartResponse):
                await self._start(output)
            elif isinstance(output, CancelResponse):
                if self._generation is not None:
                    self._generation.cancel()
            else:
                await self._send(output)

    async def _send(self, event: ServerEventBase) -> None:
        async with self._send_lock:
            await self._ws.send_str(encode_event(event))

    async def _start(self, command: StartResponse) -> None:
        assert self._engine_session is not None
        engine_session = self._engine_session
        if not command.in_conversation:  # out of band: leave the conversation's cache alone
            engine_session = await self._engine.open_session()
        generation = engine_session.generate(command.conversation, command.reply_key, command.params)
        self._generation = generation
        own = None if command.in_conversation else engine_session
        self._task = asyncio.create_task(self._stream(command.response_id, generation, own))

    async def _stream(self, response_id: str, generation: Generation, own: EngineSession | None) -> None:
        try:
            async for event in generation:
                if isinstance(event, TextDelta):
                    outputs = self._session.on_delta(response_id, event.text)
                elif isinstance(event, GenerationDone):
                    outputs = self._session.on_done(response_id, event)
                else:
                    outputs = self._session.on_tool_call(response_id, event)
                await self._emit(outputs)
        except ConnectionResetError:
            self._log.info("client gone while streaming", response=response_id)
        except Exception:
            self._log.exception("streaming failed", response=response_id)
            failed = GenerationDone("error", error_code="server_error", error_message="The response failed.")
            with contextlib.suppress(Exception):
                await self._emit(self._session.on_done(response_id, failed))
        finally:
            if own is not None:
                await own.close()

    async def _shutdown(self) -> None:
        if self._generation is not None:
            self._generation.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._engine_session is not None:
            # Shielded: a handler cancelled on disconnect must still free the session's cache.
            await asyncio.shield(self._engine_session.close())
