"""The per-connection driver: frames in, the session's steps out.

It only moves data, through a `Transport` (`aural.protocols.transport`): a websocket's (`transports.py`), or
an in-memory pipe's when the runtime runs in its client's process (`local.py`); either way every frame goes
through the codec and the `Limits`. Socket → `ConversationSession.receive` → send the step's events in order (one send
lock) → run its commands (`commands.py`), whose results come back through `receive` the same way. Input
audio is decoded by the connection's ingest stage, off the event loop; the next message is read once its
answer is in. A bug
in the session costs one `error` event, never the server or the conversation. When the client lags, the
engine merges pending deltas, so nothing queues without bound. A conversation ends with a clean close; one
whose socket drops waits `resume_grace` for a connection that resumes it, then ends and frees its engine
session.

Every message is first counted against the connection's rate and decoded within its `Limits` (`guard.py`).

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
from aiohttp import WSCloseCode

from aural.protocols import encode_event
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.extensions import BINARY_AUDIO
from aural.protocols.limits import DEFAULT_LIMITS, Limits
from aural.protocols.server_events import AuralSessionResumed, ServerEventBase, SessionCreated
from aural.protocols.transport import Transport, TransportClosed

from ..engine.base import Engine
from ..session.inputs import AudioFrame, ClientSent, Input, Opened
from ..session.session import ConversationSession
from ..session.wire_errors import error_event
from ..store.base import ConversationStore
from ..store.saver import Saver
from ..store.tracker import ChangeTracker
from ..tools import ToolRunner
from .commands import CommandRunner, SpeechModel
from .guard import Gate
from .ingest import Ingest
from .metrics import Metrics
from .telemetry import ConnectionTelemetry
from .timeouts import IdleWatch, Timeouts

Attached = tuple[Transport, "asyncio.Future[bool]"]
"""A socket handed to the conversation, and what its handler awaits: the conversation is done with it (False:
it ended before taking it)."""

log = structlog.get_logger(__name__)


class ConnectionDriver:
    """Runs one conversation over its websockets; `tools` runs the calls of server tools, `limits` bound the
    client's messages, `metrics` counts its work and `timeouts` end it when it falls silent.

    A conversation outlives a socket that drops (no clean close from the client) for `timeouts.resume_grace`
    seconds: a new connection that names its session (`?aural.resume=<session id>`, with the key that
    opened it) takes it over with items, cache and running response intact (`serve`). Events made while no
    socket holds it are not kept. A clean close, a server close (drain, idle timeout) or the grace's end
    ends it and frees its engine session.

    With a `store`, the conversation's durable state is saved after every change (`aural.runtime.store.Saver`, in
    the background) so that another server can resume it once this one is gone; it is deleted when the conversation
    ends, and kept when the server goes away while the conversation waits for a resume (`close` with no socket).

    Args:
        owner: the `key_id` of the key that opened it (None without keys): only that key may resume it.
        store: where the conversation is saved (None: nowhere).
        restored: the session was restored from the store: its first socket resumes it, and its client took up to
            `last_event_id`.
    """

    def __init__(
        self,
        engine: Engine,
        session: ConversationSession,
        vad: SpeechModel,
        tools: ToolRunner,
        *,
        metrics: Metrics,
        timeouts: Timeouts,
        limits: Limits = DEFAULT_LIMITS,
        owner: str | None = None,
        store: ConversationStore | None = None,
        restored: bool = False,
        last_event_id: str | None = None,
    ) -> None:
        self.owner = owner
        self._ws: Transport | None = None
        self._sockets: asyncio.Queue[Attached | None] = asyncio.Queue()  # None: end (`close`)
        self._engine = engine
        self._session = session
        self._vad = vad
        self._tools = tools
        self._timeouts = timeouts
        self._limits = limits
        self._send_lock = asyncio.Lock()
        self._commands: CommandRunner | None = None
        self._log = log.bind(session=session.id)
        self._telemetry = ConnectionTelemetry(metrics, self._log)
        self._idle = IdleWatch(timeouts)
        self._progress = asyncio.Event()  # set after each input handled, and at the end
        self._closing = False  # the server ends the conversation: its socket's close is no drop
        self._last_event_id = last_event_id  # of the last client event taken: a resuming client resends after it
        self._handled_event_id = last_event_id  # of the last client event handled: the store keeps it with its effect
        self._handling = asyncio.Lock()  # held while a client event is handled: a save waits for all its effect
        self._store = store
        self._saver: Saver | None = None
        self._restored = restored
        self._keep_stored = False  # the server went away while the conversation waited for a resume
        self._ended = False
        self._lifetime: asyncio.Task[None] | None = None

    @property
    def session_id(self) -> str:
        return self._session.id

    @property
    def serving(self) -> bool:
        """Whether the conversation goes on (it may take a socket)."""
        return not (self._ended or self._closing)

    def start(self, on_end: Callable[[], None]) -> None:
        """Begin the conversation (it waits for its first socket, `serve`); `on_end` runs once it has ended."""

        async def live() -> None:
            try:
                await self._live()
            finally:
                on_end()

        self._lifetime = asyncio.create_task(live(), name=f"conversation {self._session.id}")

    async def serve(self, ws: Transport) -> bool:
        """Hand the conversation a socket (the first, or one that resumes it, which takes over from a socket
        still open) and return once the conversation is done with it: True, or False if it ended first."""
        if self._ended or self._closing:
            return False
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._sockets.put_nowait((ws, done))
        if self._ws is not None:  # taken over (the old socket may be half-open): the new one wins
            await self._ws.close(WSCloseCode.POLICY_VIOLATION, "resumed on another connection")
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:  # a handler cancelled on disconnect leaves the conversation running
            return True

    async def _live(self) -> None:
        # Every line this conversation's work logs (its tasks copy the context) names it.
        structlog.contextvars.bind_contextvars(session=self._session.id, conversation=self._session.conversation_id)
        engine_session = await self._engine.open_session()
        self._commands = CommandRunner(
            self._engine,
            engine_session,
            self._vad,
            self._tools,
            Ingest(self._session.capabilities.check_schema, self._session.max_samples),
            self.receive,
            self._log,
        )
        if self._store is not None:
            tracker = ChangeTracker(self._session, self.owner)
            self._saver = Saver(self._store, tracker, lambda: self._handled_event_id, self._handling, self._log)
        self._log.info("session opened", restored=self._restored)
        try:
            opened = False
            while (attached := await self._next_socket(opened)) is not None:
                ws, done = attached
                try:
                    await self._attach(ws, resumed=opened or self._restored)
                    client_closed = await self._read(ws, resumed=opened or self._restored)
                    opened = True
                finally:
                    self._ws = None
                    done.set_result(True)
                if self._closing or (client_closed and self._sockets.empty()):
                    break  # the client is done with the conversation (no other took it over), or the server ends it
                self._log.info("connection dropped", grace_s=self._timeouts.resume_grace)
        except asyncio.CancelledError:
            self._keep_stored = True  # the server stops: the stored conversation stays for a resume elsewhere
            raise
        finally:
            await self._commands.close()
            self._commands = None  # it holds `self.receive`: freed by reference counting, not the cycle collector
            # Shielded: the conversation's task may be cancelled (shutdown) and must still free the cache.
            await asyncio.shield(engine_session.close())
            if self._saver is not None:
                await self._saver.close(keep=self._keep_stored)
                self._saver = None
            self._ended = True
            self._progress.set()
            while not self._sockets.empty():  # sockets that came too late: their handlers refuse them
                if (late := self._sockets.get_nowait()) is not None:
                    late[1].set_result(False)
            self._log.info("session closed")

    async def _next_socket(self, opened: bool) -> Attached | None:
        """The first socket; after a drop, one that resumes the conversation within the grace (None: none came)."""
        if not opened or not self._sockets.empty():
            return await self._sockets.get()
        if not self._timeouts.resume_grace or self._closing:
            return None
        try:
            async with asyncio.timeout(self._timeouts.resume_grace):
                return await self._sockets.get()
        except TimeoutError:
            return None

    async def _attach(self, ws: Transport, *, resumed: bool) -> None:
        self._ws = ws
        if not resumed:
            await self.receive(Opened())
            return
        self._log.info("session resumed")
        running = self._session.response
        await self._send(SessionCreated(session=self._session.config.model_copy(deep=True)))
        item_ids = [stored.id for stored in self._session.items]
        taken = self._last_event_id
        await self._send(
            AuralSessionResumed(item_ids=item_ids, response_id=running.id if running else None, last_event_id=taken)
        )

    async def _read(self, ws: Transport, *, resumed: bool) -> bool:
        """Serve one socket's messages until it closes (or falls silent past its timeouts); returns whether the
        client closed it (a close frame), rather than the connection being lost."""
        gate, idle = Gate(self._limits), IdleWatch(self._timeouts)
        if resumed:
            idle.heard()  # naming the conversation was its first event
        binary_audio = ws.subprotocol == BINARY_AUDIO
        watch = asyncio.create_task(self._close_when_silent(idle))
        self._idle = idle
        try:
            while True:
                try:
                    frame = await ws.recv()
                except TransportClosed as closed:
                    return not closed.lost
                idle.heard()
                if isinstance(frame, str):
                    await self._text(gate, frame)
                else:
                    await self._binary(gate, frame, binary_audio)
        finally:
            watch.cancel()

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
        if self._saver is not None:
            self._saver.changed()
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
        """End the conversation: close its socket with `code` and `reason` after the event being sent (a
        conversation waiting for a resume just ends)."""
        self._closing = True
        async with self._send_lock:
            if self._ws is not None:
                await self._ws.close(code, reason)
        if self._ws is None:
            self._keep_stored = True  # its client may resume it on another server
            self._sockets.put_nowait(None)  # no socket to close: end the wait for one

    async def _close_when_silent(self, idle: IdleWatch) -> None:
        why = await idle.expired(lambda: self._session.busy)
        self._log.info("closing a silent connection", reason=why)
        await self._fail(ErrorCode.IDLE_TIMEOUT, why)
        # Shielded: the read loop ends as the close begins, and cancels this task on its way out.
        await asyncio.shield(self.close(WSCloseCode.OK, "idle timeout"))

    async def _text(self, gate: Gate, data: str) -> None:
        try:
            gate.admit()
            event = await gate.decode(data)
        except ProtocolError as exc:
            self._last_event_id = exc.event_id or self._last_event_id
            await self._send(error_event(exc))
            return
        self._last_event_id = event.event_id or self._last_event_id
        async with self._handling:  # its effect may come in steps (audio decoded off the loop first)
            await self.receive(ClientSent(event))
            self._handled_event_id = event.event_id or self._handled_event_id

    async def _binary(self, gate: Gate, data: bytes, audio: bool) -> None:
        try:
            gate.admit()
        except ProtocolError as exc:
            await self._send(error_event(exc))
            return
        if audio:
            await self.receive(AudioFrame(data))
        else:
            refusal = f"Events are JSON text messages; binary frames of audio need the '{BINARY_AUDIO}' subprotocol."
            await self._fail(ErrorCode.INVALID_EVENT, refusal)

    async def _fail(self, code: ErrorCode, message: str, event_id: str | None = None) -> None:
        error = ProtocolError(code, message, event_id=event_id)
        if code is ErrorCode.SERVER_ERROR:
            error.error_type = "server_error"
        await self._send(error_event(error))

    async def _send(self, event: ServerEventBase) -> None:
        """Send one event to the socket that holds the conversation; with none, or one whose connection is lost,
        the event is not kept (nobody reads it). A lost connection is the read loop's to notice (it waits for a
        resume), so a send to it raises nothing: the work that made the event (a response streaming) goes on."""
        async with self._send_lock:
            if self._ws is None:  # dropped and not resumed yet: nobody reads it
                return
            try:
                await self._ws.send(encode_event(event))
            except TransportClosed:  # closed: nobody reads it
                return
        self._idle.spoke()
        self._telemetry.sent(event)
