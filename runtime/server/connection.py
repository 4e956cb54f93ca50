"""The per-connection driver: websocket frames ↔ conversation session ↔ engine and voice activity model.

It only moves data. Decoded client events go to the session; the session's server events go out in
order through one send lock; its commands start or cancel the generation task (whose deltas flow back
through the session), prefill the cache ahead of a reply, transcribe audio in a side pass, or run the
voice activity model over new audio — in a worker thread, in order, batching what piled up meanwhile —
or run server tools' calls concurrently, each output reported back to the session.
When the client lags, the engine merges pending deltas, so nothing queues without bound. A dropped
connection cancels everything and frees the engine session.

Binary frames carry raw input audio (in the session's input format) when the client negotiated the
`aural.binary-audio` subprotocol; otherwise they are refused with an `error` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

import numpy as np
import structlog
from aiohttp import WSMsgType, web

from aural.protocols import decode_client_event, encode_event
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import FunctionCallItem
from aural.protocols.server_events import ServerEventBase

from ..audio.vad import SileroVad, VadStream
from ..engine.base import Engine, EngineSession, Generation, GenerationDone, TextDelta
from ..errors import ModelFailure
from ..session.commands import (
    CancelResponse,
    CancelTools,
    DetectSpeech,
    Output,
    Prefill,
    RunTools,
    StartResponse,
    Transcribe,
    error_event,
)
from ..session.session import ConversationSession
from ..tools import NO_TOOLS, ToolRunner

BINARY_AUDIO = "aural.binary-audio"

log = structlog.get_logger(__name__)


class ConnectionDriver:
    """Runs one websocket conversation to its end; `tools` runs the calls of server tools."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        engine: Engine,
        session: ConversationSession,
        vad: SileroVad,
        tools: ToolRunner | None = None,
    ) -> None:
        self._ws = ws
        self._engine = engine
        self._session = session
        self._vad = vad
        self._engine_session: EngineSession | None = None
        self._send_lock = asyncio.Lock()
        self._generation: Generation | None = None
        self._task: asyncio.Task[None] | None = None
        self._speech: asyncio.Queue[DetectSpeech] = asyncio.Queue()
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._tools = tools or NO_TOOLS
        self._tool_calls: dict[asyncio.Task[None], str] = {}  # running server tool calls → their response's id
        self._log = log.bind(session=session.id)

    async def run(self) -> None:
        """Serve until the client closes the socket."""
        self._engine_session = await self._engine.open_session()
        self._log.info("session opened")
        self._spawn(self._detect_speech())
        binary_audio = self._ws.ws_protocol == BINARY_AUDIO
        try:
            await self._emit(self._session.start())
            async for message in self._ws:
                if message.type == WSMsgType.TEXT:
                    await self._receive(message.data)
                elif message.type == WSMsgType.BINARY and binary_audio:
                    await self._apply(functools.partial(self._session.append_audio, message.data), None)
                elif message.type == WSMsgType.BINARY:
                    refusal = (
                        f"Events are JSON text messages; binary frames of raw audio need the '{BINARY_AUDIO}' "
                        "subprotocol."
                    )
                    await self._fail(ErrorCode.INVALID_EVENT, refusal)
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
        await self._apply(functools.partial(self._session.handle, event), event.type, event.event_id)

    async def _apply(self, step: Callable[[], list[Output]], what: str | None, event_id: str | None = None) -> None:
        """Run one step of the session and carry out what it returns; a bug costs one event, never the
        server or the conversation."""
        try:
            outputs = step()
        except Exception:
            self._log.exception("event failed", event_type=what or "binary audio")
            await self._fail(ErrorCode.SERVER_ERROR, "The server failed on this event.", event_id)
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
            elif isinstance(output, DetectSpeech):
                self._speech.put_nowait(output)
            elif isinstance(output, Prefill):
                # Stale ones cost nothing: the engine drops a prefill that a newer request superseded.
                assert self._engine_session is not None
                self._spawn(self._engine_session.prefill(output.conversation, output.tools))
            elif isinstance(output, Transcribe):
                self._spawn(self._transcribe(output))
            elif isinstance(output, RunTools):
                for call in output.calls:
                    task = self._spawn(self._run_tool(call))
                    self._tool_calls[task] = output.response_id
                    task.add_done_callback(self._tool_calls.pop)
            elif isinstance(output, CancelTools):
                for task, response_id in list(self._tool_calls.items()):
                    if response_id in output.response_ids:
                        task.cancel()
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
            failed = GenerationDone("error", error=ModelFailure("The response failed."))
            with contextlib.suppress(Exception):
                await self._emit(self._session.on_done(response_id, failed))
        finally:
            if own is not None:
                await own.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)
        return task

    async def _run_tool(self, call: FunctionCallItem) -> None:
        output = await self._tools.run(call.name, call.arguments, logger=self._log.bind(call_id=call.call_id))
        with contextlib.suppress(ConnectionResetError):
            await self._apply(functools.partial(self._session.on_tool_result, call.call_id, output), "tool output")

    async def _detect_speech(self) -> None:
        """Run the voice activity model over new audio in order, off the event loop; audio that piled up
        while the model ran goes through in one call."""
        stream: tuple[int, VadStream] | None = None
        while True:
            pending = [await self._speech.get()]
            while not self._speech.empty():
                pending.append(self._speech.get_nowait())
            for number, commands in itertools.groupby(pending, key=lambda command: command.stream):
                samples = np.concatenate([command.samples for command in commands])
                if stream is None or stream[0] != number:
                    stream = (number, self._vad.stream())
                try:
                    probabilities = await asyncio.to_thread(stream[1].probabilities, samples)
                except Exception:  # the conversation goes on without turn detection for these samples
                    self._log.exception("voice activity detection failed")
                    continue
                await self._apply(functools.partial(self._session.on_speech, number, probabilities), "voice activity")

    async def _transcribe(self, command: Transcribe) -> None:
        """A side pass on a throwaway engine session: the conversation's cache is never touched."""
        engine_session = await self._engine.open_session()
        try:
            key = f"transcription:{command.item_id}"
            generation = engine_session.generate(command.conversation, key, command.params)
            async for event in generation:
                if isinstance(event, TextDelta):
                    outputs = self._session.on_transcript_delta(command.item_id, command.content_index, event.text)
                elif isinstance(event, GenerationDone):
                    outputs = self._session.on_transcript_done(command.item_id, command.content_index, event)
                else:  # a transcription has no tools: no call events come
                    continue
                await self._emit(outputs)
        except ConnectionResetError:
            pass
        finally:
            await asyncio.shield(engine_session.close())

    async def _shutdown(self) -> None:
        if self._generation is not None:
            self._generation.cancel()
        tasks = [t for t in (self._task, *self._side_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._session.close()
        if self._engine_session is not None:
            # Shielded: a handler cancelled on disconnect must still free the session's cache.
            await asyncio.shield(self._engine_session.close())
