"""The per-connection driver: websocket frames in, the session's steps out.

It only moves data: socket → `ConversationSession.receive` → send the step's events in order (one send
lock) → run its commands (`commands.py`), whose results come back through `receive` the same way. Input
audio is decoded by the connection's ingest stage, off the event loop; the next message is read once its
answer is in. A bug
in the session costs one `error` event, never the server or the conversation. When the client lags, the
engine merges pending deltas, so nothing queues without bound. A dropped connection cancels everything
and frees the engine session.

Flow control. Outbound, a send waits while the socket's write buffer is over aiohttp's limit (64 KiB), so a
client that stops reading stalls only its own response's consumer, whose engine then merges the pending
deltas into one: the server holds a bounded amount per connection, and the client, reading again, gets the
whole text. Inbound, the next message is read only once the previous one is handled; what arrives meanwhile
waits in aiohttp's queue, which stops reading the socket past 128 KiB (its high watermark), so TCP pushes
back on a client that sends faster than it is served. Silent connections end by their `Timeouts`.

Binary frames carry raw input audio (in the session's input format) when the client negotiated the
`aural.binary-audio` subprotocol; otherwise they are refused with an `error` event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from aural.protocols import decode_client_event, encode_event
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.server_events import ServerEventBase

from ..engine.base import Engine
from ..session.inputs import AudioFrame, ClientSent, Input, Opened
from ..session.session import ConversationSession
from ..session.wire_errors import error_event
from ..tools import ToolRunner
from .commands import CommandRunner, SpeechModel
from .ingest import Ingest
from .metrics import Metrics
from .telemetry import ConnectionTelemetry
from .timeouts import IdleWatch, Timeouts

BINARY_AUDIO = "aural.binary-audio"

log = structlog.get_logger(__name__)


class ConnectionDriver:
    """Runs one websocket conversation to its end; `tools` runs the calls of server tools, `metrics` counts
    its work and `timeouts` end it when it falls silent."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        engine: Engine,
        session: ConversationSession,
        vad: SpeechModel,
        tools: ToolRunner,
        *,
        metrics: Metrics,
        timeouts: Timeouts,
    ) -> None:
        self._ws = ws
        self._engine = engine
        self._session = session
        self._vad = vad
        self._tools = tools
        self._send_lock = asyncio.Lock()
        self._commands: CommandRunner | None = None
        self._log = log.bind(session=session.id)
        self._telemetry = ConnectionTelemetry(metrics, self._log)
        self._idle = IdleWatch(timeouts)
        self._progress = asyncio.Event()  # set after each input handled, and at the end
        self._ended = False

    async def run(self) -> None:
        """Serve until the socket closes: by the client, a timeout or the server's drain."""
        # Every line this connection's work logs (its tasks copy the context) names the conversation.
        ids = structlog.contextvars.bind_contextvars(
            session=self._session.id, conversation=self._session.conversation_id
        )
        engine_session = await self._engine.open_session()
        self._commands = CommandRunner(
            self._engine, engine_session, self._vad, self._tools, Ingest(), self.receive, self._log
        )
        self._log.info("session opened")
        binary_audio = self._ws.ws_protocol == BINARY_AUDIO
        watch = asyncio.create_task(self._close_when_silent())
        try:
            await self.receive(Opened())
            async for message in self._ws:
                self._idle.heard()
                if message.type == WSMsgType.TEXT:
                    await self._text(message.data)
                elif message.type == WSMsgType.BINARY and binary_audio:
                    await self.receive(AudioFrame(message.data))
                elif message.type == WSMsgType.BINARY:
                    refusal = (
                        f"Events are JSON text messages; binary frames of raw audio need the '{BINARY_AUDIO}' "
                        "subprotocol."
                    )
                    await self._fail(ErrorCode.INVALID_EVENT, refusal)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            watch.cancel()
            await self._commands.close()
            # Shielded: a handler cancelled on disconnect must still free the session's cache.
            await asyncio.shield(engine_session.close())
            self._ended = True
            self._progress.set()
            self._log.info("session closed")
            structlog.contextvars.reset_contextvars(**ids)

    async def receive(self, received: Input) -> None:
        """Hand one input to the session, send the events of its step and carry out its commands."""
        assert self._commands is not None
        self._telemetry.received(received)
        try:
            step = self._session.receive(received)
        except Exception:
            client_event = received.event if isinstance(received, ClientSent) else None
            what = client_event.type if client_event is not None else type(received).__name__
            self._log.exception("input failed", input=what)
            event_id = client_event.event_id if client_event is not None else None
            await self._fail(ErrorCode.SERVER_ERROR, "The server failed on this event.", event_id)
            return
        for event in step.events:
            await self._send(event)
        for command in step.commands:
            await self._commands.run(command)
        self._progress.set()

    async def settled(self) -> None:
        """Return once no response or server tool call runs in the conversation, or the connection ended."""
        await self._until(lambda: not self._session.busy or self._ended)

    async def ended(self) -> None:
        """Return once the conversation ended and freed its engine session."""
        await self._until(lambda: self._ended)

    async def _until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self._progress.clear()
            await self._progress.wait()

    async def close(self, code: int, reason: str) -> None:
        """Close the socket with `code` and `reason` after the event being sent; the conversation then ends."""
        async with self._send_lock:
            await self._ws.close(code=code, message=reason.encode())

    async def _close_when_silent(self) -> None:
        why = await self._idle.expired(lambda: self._session.busy)
        self._log.info("closing a silent connection", reason=why)
        await self._fail(ErrorCode.IDLE_TIMEOUT, why)
        # Shielded: the read loop ends as the close begins, and cancels this task on its way out.
        await asyncio.shield(self.close(WSCloseCode.OK, "idle timeout"))

    async def _text(self, data: str) -> None:
        try:
            event = decode_client_event(data)
        except ProtocolError as exc:
            await self._send(error_event(exc))
            return
        await self.receive(ClientSent(event))

    async def _fail(self, code: ErrorCode, message: str, event_id: str | None = None) -> None:
        error = ProtocolError(code, message, event_id=event_id)
        if code is ErrorCode.SERVER_ERROR:
            error.error_type = "server_error"
        await self._send(error_event(error))

    async def _send(self, event: ServerEventBase) -> None:
        async with self._send_lock:
            if self._ws.closed:  # closed by the server (drain, timeout) or the client: nobody reads any more
                return
            await self._ws.send_str(encode_event(event))
        self._idle.spoke()
        self._telemetry.sent(event)
