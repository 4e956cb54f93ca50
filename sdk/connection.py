"""The client connection: typed events in and out over one websocket, plus audio and message helpers.

    async with aural.sdk.connect("ws://127.0.0.1:8000/v1/realtime", model="tiny") as conn:
        await conn.append_audio("question.wav")
        await conn.commit()
        print(await conn.create_response().collect())

The connection talks through a `Transport` (`aural.protocols.transport`): a websocket (`connect(url)`), or
any other `Opener`'s, such as `aural.runtime.local(...)`, which runs the model in this process.

Events are read straight from the transport when the caller asks for them (`recv`, `async for`,
a `ResponseStream`): there is no background reader and no backlog, so a slow consumer slows the
server down through the transport's own flow control instead of growing a queue.

A connection that drops (no clean close) is taken back: the SDK reconnects with backoff and jitter, naming
its session (Aural's `aural.resume` extension), sends again the events the server had not taken (it keeps
the last `REPLAY_BYTES` of what it sent), and reading goes on with `aural.session.resumed`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Generator
from ssl import SSLContext
from types import TracebackType
from typing import Any, Self, Unpack

from aural.protocols import (
    ClientEvent,
    ErrorCode,
    ProtocolError,
    ServerEvent,
    decode_server_event,
    new_id,
)
from aural.protocols.client_events import (
    ConversationItemCreate,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    SessionUpdate,
)
from aural.protocols.extensions import BINARY_AUDIO
from aural.protocols.models import (
    ContentPart,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputAudio,
    InputText,
    MessageItem,
    OutputText,
    PcmFormat,
    Response,
    ResponseParams,
    SessionConfig,
)
from aural.protocols.server_events import RESUME_QUERY, AuralSessionResumed, Error, SessionCreated, SessionUpdated
from aural.protocols.transport import Frame, Opener, Transport, TransportClosed

from .audio import AudioSource, encode_audio
from .errors import AuralConnectionError, AuralProtocolError, AuralServerError
from .params import ResponseSettings, SessionSettings, encode_client_event, response_params, session_config
from .response import EventHandler, ResponseStream
from .tools import ToolCall, Tools
from .websocket import WebsocketOpener, with_query

logger = logging.getLogger(__name__)

APPEND_CHUNK_BYTES = 192 * 1024
"""Audio bytes per `input_audio_buffer.append`: 256 KiB once base64-encoded."""


def _b64(data: bytes | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


REPLAY_BYTES = 8 * 1024 * 1024
"""The most recently sent events kept to be sent again after a drop (about 170 s of 24 kHz audio)."""
RESUME_SECONDS = 30.0
"""How long a dropped connection tries to take its conversation back by default (Aural keeps one 60 s)."""


def connect(
    url: str | None = None,
    *,
    runtime: Opener | None = None,
    model: str | None = None,
    api_key: str | None = None,
    on_event: EventHandler | None = None,
    ssl: SSLContext | None = None,
    tools: Tools | None = None,
    binary_audio: bool = False,
    resume: float = RESUME_SECONDS,
) -> Connection:
    """Prepare a connection to an Aural (or OpenAI Realtime) server, or to a runtime in this process; open it
    with `async with`.

    `await connect(...)` opens it too; then close it with `await conn.close()`.

    Args:
        url: the full websocket URL, such as `ws://127.0.0.1:8000/v1/realtime`.
        runtime: instead of `url`, what opens the connection's transport (an `aural.protocols.transport.Opener`):
            `aural.runtime.local(model="tiny")` runs the model in this process, with no socket.
        model: the model to use, sent as the `?model=` query parameter.
        api_key: sent as `Authorization: Bearer <api_key>`: a server key or a client secret (`ek_…`). A
            server that refuses it raises `AuralServerError` (code `invalid_api_key`) when the connection opens.
        on_event: called with each server event that a `ResponseStream` reads but that is not part
            of its response (another response, conversation and rate-limit events...). It may be a
            plain function or a coroutine function.
        ssl: the TLS context for a `wss://` URL (to trust a private CA, say); the system's by default.
        tools: functions the model may call. Their definitions are sent with `session.update` as soon
            as the connection opens, and every `ResponseStream` runs the calls its response ends in,
            sends their outputs and asks for the continuation (see `ResponseStream`).
        binary_audio: offer Aural's `aural.binary-audio` subprotocol; when the server takes it,
            `append_audio` sends raw binary frames instead of base64 JSON events (28% fewer bytes);
            other servers simply get JSON.
        resume: seconds to keep trying, with backoff and jitter, to take the conversation back when the
            connection drops without a close frame (Aural keeps it for `--resume-grace`); 0: a drop ends
            the connection. A close the server sends (1009 for a message over its limit, say) is not a
            drop: it ends the connection with `AuralConnectionError`. A server
            that cannot resume (it no longer holds the conversation, or is not Aural) raises
            `AuralConnectionError` or `AuralServerError` (code `session_not_found`).

    Raises:
        ValueError: neither `url` nor `runtime`; `url`, `api_key` or `ssl` with `runtime`.
    """
    opener: Opener
    if runtime is not None:
        if url is not None or api_key is not None or ssl is not None:
            raise ValueError("connect takes a runtime alone: no url, api_key or ssl with it")
        opener = runtime
    elif url is not None:
        opener = WebsocketOpener(url, api_key=api_key, ssl=ssl)
    else:
        raise ValueError("connect needs a url or a runtime")
    query = {"model": model} if model is not None else {}
    return Connection(opener, query=query, on_event=on_event, tools=tools, binary_audio=binary_audio, resume=resume)


class Connection:
    """One realtime session over a transport. Made by `connect`.

    Only one coroutine may read events at a time: while a `ResponseStream` is being consumed, it is
    the reader, and events that are not its own go to `on_event`.

    Args:
        opener: what opens the transport (`WebsocketOpener` for a URL).
        query: the handshake's query parameters (`model`).

    Attributes:
        url: the websocket URL, query included (None for another opener).
        on_event: see `connect`; may be changed at any time.
        tools: see `connect`; may be changed at any time (tell the server with `update_session`).
    """

    def __init__(
        self,
        opener: Opener,
        *,
        query: dict[str, str] | None = None,
        on_event: EventHandler | None = None,
        tools: Tools | None = None,
        binary_audio: bool = False,
        resume: float = RESUME_SECONDS,
    ) -> None:
        self._opener = opener
        self._query = query or {}
        self.url = with_query(opener.url, self._query) if isinstance(opener, WebsocketOpener) else None
        self.on_event = on_event
        self.tools = tools
        self._ws: Transport | None = None
        self._session: SessionConfig | None = None
        self._offer_binary = binary_audio
        self._resume = resume
        self._session_id: str | None = None
        self._sent: deque[tuple[str, str]] = deque()  # (event_id, frame), for `_replay`
        self._sent_bytes = 0
        self._pending: deque[ServerEvent] = deque()  # read while resuming, for the next reader
        self._closed: TransportClosed | None = None  # how it closed, once a read found it closed
        self.binary_audio = False
        """True once the server agreed to binary audio frames (see `connect`)."""

    async def _handshake(self, query: dict[str, str]) -> Transport:
        try:
            return await self._opener.open(query, [BINARY_AUDIO] if self._offer_binary else [])
        except OSError as exc:  # another opener's; the websocket's raises the SDK's own errors
            raise AuralConnectionError(f"could not connect: {exc}") from exc

    async def _open(self) -> Self:
        if self._ws is not None:
            raise RuntimeError("this connection is already open")
        self._ws = await self._handshake(self._query)
        self.binary_audio = self._ws.subprotocol == BINARY_AUDIO
        if self.tools:
            await self.send(SessionUpdate(session=SessionConfig(tools=self.tools.definitions)))
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        return self._open().__await__()

    async def __aenter__(self) -> Self:
        # `async with await connect(...)` enters a connection that is already open.
        return self if self._ws is not None else await self._open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection cleanly (a no-op when it is not open)."""
        if self._ws is not None:
            await self._ws.close()

    @property
    def _socket(self) -> Transport:
        if self._ws is None:
            raise RuntimeError("the connection is not open: use `async with connect(...)`")
        return self._ws

    @property
    def session(self) -> SessionConfig | None:
        """The session configuration from the latest `session.created` / `session.updated` read."""
        return self._session

    # --- events ----------------------------------------------------------------------------------

    async def recv(self) -> ServerEvent:
        """Read the next server event, skipping events of types this version does not know.

        Raises:
            AuralConnectionError: the connection is closed, or closes while waiting.
            AuralProtocolError: the server sent an invalid message.
        """
        event = await self._next_event()
        if event is None:
            raise AuralConnectionError(f"the connection is closed ({self._closed})")
        return event

    async def __aiter__(self) -> AsyncIterator[ServerEvent]:
        """Yield server events as `recv` does, until the connection closes normally."""
        while (event := await self._next_event()) is not None:
            yield event

    async def _next_event(self) -> ServerEvent | None:
        """The next known server event, or None once the connection has closed normally."""
        if self._pending:
            return self._pending.popleft()
        ws = self._socket
        while True:
            try:
                message = await ws.recv()
            except TransportClosed as exc:
                if exc.normal:
                    self._closed = exc
                    return None
                if not exc.lost or not await self._take_back(exc):
                    raise AuralConnectionError(f"the connection closed unexpectedly: {exc}") from exc
                if self._pending:
                    return self._pending.popleft()
                ws = self._socket
                continue
            try:
                event = decode_server_event(message)
            except ProtocolError as exc:
                if exc.code != ErrorCode.UNKNOWN_EVENT:
                    raise AuralProtocolError(exc.message) from exc
                # Future `aural.*` extensions and newer OpenAI events: not errors, just not ours.
                logger.debug("skipping a server event: %s", exc.message)
                continue
            if isinstance(event, SessionCreated | SessionUpdated):
                self._session = event.session
                self._session_id = event.session.id or self._session_id
            return event

    async def send(self, event: ClientEvent) -> None:
        """Send a client event (a class of `aural.protocols.client_events`).

        An event without `event_id` gets one, set on the object itself, so that the caller can match
        an `error` event to it. Fields left unset are not sent; fields set to None are sent as `null`.

        Raises:
            AuralConnectionError: the connection is closed.
        """
        if event.event_id is None:
            event.event_id = new_id("evt")
        frame = encode_client_event(event)
        self._remember(event.event_id, frame)
        await self._send_frame(frame, event.type)

    def _remember(self, event_id: str, frame: str) -> None:
        self._sent.append((event_id, frame))
        self._sent_bytes += len(frame)
        while self._sent_bytes > REPLAY_BYTES and len(self._sent) > 1:
            self._sent_bytes -= len(self._sent.popleft()[1])

    async def _send_frame(self, frame: Frame, what: str) -> None:
        """Send one frame; after a drop, once more on the connection that took the conversation back."""
        try:
            await self._socket.send(frame)
        except TransportClosed as exc:
            last_word = await self._unread_error()
            if last_word is not None:  # e.g. model_not_found: the server said why before it closed
                raise last_word from exc
            if exc.lost and await self._take_back(exc):
                if isinstance(frame, bytes):  # binary audio has no event_id to replay by: send it again now
                    await self._send_frame(frame, what)
                return
            raise AuralConnectionError(f"cannot send {what}: the connection is closed") from exc

    async def _take_back(self, cause: TransportClosed) -> bool:
        """Reconnect after a drop and take the session back, retrying with backoff and jitter for `resume`
        seconds. Returns False when there is nothing to take back (no session yet, or resuming is off).

        Raises:
            AuralServerError: the server refused (the conversation is gone: `session_not_found`; a bad key).
            AuralConnectionError: no server answered in time, or one that started a new session instead.
        """
        if not self._resume or self._session_id is None:
            return False
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + self._resume, 0.1
        query = {**self._query, RESUME_QUERY: self._session_id}
        logger.info("connection dropped (%s); resuming session %s", cause, self._session_id)
        while True:
            try:
                ws = await self._handshake(query)
                break
            except AuralConnectionError:
                if loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))  # jitter: clients of one outage spread out
                delay = min(2 * delay, 2.0)
        try:
            first = decode_server_event(await ws.recv())
            resumed = decode_server_event(await ws.recv()) if isinstance(first, SessionCreated) else None
        except (TransportClosed, ProtocolError) as exc:
            raise AuralConnectionError(f"could not resume session {self._session_id}: {exc}") from exc
        if isinstance(first, Error):
            await ws.close()
            raise AuralServerError.from_detail(first.error)
        if not isinstance(first, SessionCreated) or first.session.id != self._session_id:
            await ws.close()
            raise AuralConnectionError(f"the server did not resume session {self._session_id}: it started another")
        self._ws, self._session = ws, first.session
        if isinstance(resumed, AuralSessionResumed):
            await self._replay(resumed.last_event_id)
        if resumed is not None:
            self._pending.append(resumed)
        return True

    async def _replay(self, last_taken: str | None) -> None:
        """Send again, in order, the remembered events sent after the last one the server took (all of them
        when it took none of them, or when that one is older than what is remembered)."""
        ids = [event_id for event_id, _ in self._sent]
        start = ids.index(last_taken) + 1 if last_taken in ids else 0
        for _, frame in list(self._sent)[start:]:
            await self._socket.send(frame)

    async def _unread_error(self) -> AuralServerError | None:
        """An `error` event the server sent before closing that nobody has read yet, if any."""
        with contextlib.suppress(TransportClosed):
            while True:  # a closed connection still yields what it received, then raises
                message = await self._socket.recv()
                with contextlib.suppress(ProtocolError):
                    event = decode_server_event(message)
                    if isinstance(event, Error):
                        return AuralServerError.from_detail(event.error)
        return None

    # --- session, audio, conversation ------------------------------------------------------------

    async def update_session(self, session: SessionConfig | None = None, **settings: Unpack[SessionSettings]) -> None:
        """Send `session.update`: what is given changes, the rest stays. The server answers `session.updated`.

            await conn.update_session(
                instructions="Answer briefly.",
                turn_detection=ServerVad(silence_duration_ms=500),
                transcription=AudioTranscription(language="en"),
            )

        Args:
            session: the protocol's `SessionConfig`, sent with the fields it has set.
            settings: `SessionSettings` (instructions, tools, tool_choice, max_output_tokens, temperature,
                input_format, turn_detection, transcription...), set on top of `session`. None is sent
                as `null`: `turn_detection=None` switches turn detection off. `append_audio` follows a
                new `input_format` once the server's `session.updated` has been read.

        Raises:
            TypeError: a name that is not a setting.
            pydantic.ValidationError: a value the protocol refuses. Nothing is sent.
        """
        await self.send(SessionUpdate(session=session_config(session, settings)))

    async def append_audio(self, audio: AudioSource, *, sample_rate: int | None = None) -> None:
        """Append audio to the server's input buffer, converted to the session's input format.

        The format is the one of the latest `session.created` / `session.updated` read: `audio/pcm` at
        its rate, with its `channels` and `encoding` (GA PCM16 mono at 24 kHz by default).

        Args:
            audio: a numpy array (float in [-1, 1] or int16, mono or (frames, channels)), raw bytes
                already in the session's input format, or the path of an audio file.
            sample_rate: the rate of an array, or of raw bytes that are PCM16 mono at another rate.

        Large audio is sent as several `input_audio_buffer.append` events (binary frames, when the
        connection negotiated them).

        Raises:
            ValueError, TypeError: as for `aural.sdk.audio.encode_audio`.
        """
        pcm = memoryview(await self._to_wire(audio, sample_rate))
        for start in range(0, len(pcm), APPEND_CHUNK_BYTES):
            chunk = pcm[start : start + APPEND_CHUNK_BYTES]
            if self.binary_audio:
                await self._send_frame(bytes(chunk), "audio")
            else:
                await self.send(InputAudioBufferAppend(audio=_b64(chunk)))

    async def commit(self) -> None:
        """Commit the input buffer as a user message (`input_audio_buffer.commit`)."""
        await self.send(InputAudioBufferCommit())

    async def clear_audio(self) -> None:
        """Discard the input buffer (`input_audio_buffer.clear`)."""
        await self.send(InputAudioBufferClear())

    async def add_message(
        self,
        role: str,
        *,
        text: str | None = None,
        audio: AudioSource | None = None,
        sample_rate: int | None = None,
    ) -> None:
        """Add a message to the conversation (`conversation.item.create`).

        A user message holds its audio, then its text (Qwen2-Audio's audio-analysis order); an
        assistant message holds `output_text`, a system message `input_text`.

        Args:
            role: "user", "assistant" or "system".
            text: the text of the message.
            audio: user audio, in any form `append_audio` takes.
            sample_rate: as for `append_audio`.

        Raises:
            ValueError: no content, audio for another role than "user", or an unknown role.
        """
        if text is None and audio is None:
            raise ValueError("a message needs text, audio or both")
        if audio is not None and role != "user":
            raise ValueError(f"only user messages can carry audio, not {role!r} ones")
        content: list[ContentPart] = []
        if audio is not None:
            content.append(InputAudio(audio=_b64(await self._to_wire(audio, sample_rate))))
        if text is not None:
            content.append(OutputText(text=text) if role == "assistant" else InputText(text=text))
        item = MessageItem.model_validate({"role": role, "content": content})
        await self.send(ConversationItemCreate(item=item))

    async def add_function_output(self, call_id: str, output: str) -> None:
        """Answer a function call (`conversation.item.create` of a `function_call_output` item).

        Needed only for calls that the connection's `tools` do not answer; then ask for the
        continuation with `create_response`.
        """
        await self.send(ConversationItemCreate(item=FunctionCallOutputItem(call_id=call_id, output=output)))

    async def run_tools(self, response: Response) -> list[ToolCall]:
        """Run a finished response's function calls with `tools`, concurrently, and send their outputs.

        `ResponseStream` does this for its own responses. Call it for a response that no stream follows
        (one started by server-side turn detection, read with `recv`), then `create_response()` for the
        continuation. Does nothing, and returns [], when there are no tools, the response made no calls,
        or it did not complete (a cancelled or cut-off response's calls are never run).

        Returns:
            The calls run, in the response's order, with the outputs sent.
        """
        calls = [item for item in response.output if isinstance(item, FunctionCallItem)]
        if self.tools is None or not calls or response.status != "completed":
            return []
        results = await self.tools.call_all(calls)
        for result in results:  # in call order, after all have finished: the conversation keeps its order
            await self.add_function_output(result.call_id, result.output)
        return results

    def create_response(
        self, params: ResponseParams | None = None, **settings: Unpack[ResponseSettings]
    ) -> ResponseStream:
        """Ask for a response; return the stream of its text, which sends the request when first used.

            reply = conn.create_response(max_output_tokens=64, tool_choice=ToolChoiceFunction(name="lookup"))

        Args:
            params: the protocol's `ResponseParams`, sent with the fields they have set.
            settings: `ResponseSettings` (instructions, tools, tool_choice, max_output_tokens, temperature,
                conversation, input, metadata...) for this response, set on top of `params`; what is not
                given (or None) comes from the session.

        Raises:
            TypeError: a name that is not a setting.
            pydantic.ValidationError: a value the protocol refuses. Nothing is sent.
        """
        return ResponseStream(self, response_params(params, settings))

    async def _to_wire(self, audio: AudioSource, sample_rate: int | None) -> bytes:
        if isinstance(audio, bytes) and sample_rate is None:
            return audio  # already in the session's input format, whichever that is
        fmt = self._pcm_format()
        return await asyncio.to_thread(
            encode_audio,
            audio,
            sample_rate,
            rate=fmt.rate,
            channels=fmt.channels or 1,
            encoding=fmt.encoding or "pcm16",
        )

    def _pcm_format(self) -> PcmFormat:
        """The PCM format the session takes (rate, channels, encoding): the GA default unless the session
        said otherwise."""
        audio = self._session.audio if self._session else None
        fmt = audio.input.format if audio and audio.input else None
        if fmt is None:
            return PcmFormat()
        if not isinstance(fmt, PcmFormat):
            raise ValueError(f"the session's input format is {fmt.type}: send raw bytes in that format")
        return fmt
