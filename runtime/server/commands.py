"""What one connection's session commands, carried out: the engine, the voice activity model, server tools
and the ingest stage.

`CommandRunner.run` is one `match` over the session's closed command union: a new command is a new case.
Work with results reports them back as session inputs through `deliver` (the driver's `receive`): a
generation's events (`Generated`), a transcription's (`Transcribed`), speech probabilities
(`SpeechScored`), a tool's output (`ToolReturned`); decoded audio is delivered before `run` returns, so
that the session has it before the connection's next client event. Nothing here blocks the event loop:
the engine runs on its device loop, decoding on the ingest thread, voice activity detection and
synchronous tools in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, assert_never

import numpy as np
import structlog

from aural.protocols.models import FunctionCallItem

from ..engine.base import AudioSamples, Engine, EngineSession, Generation, GenerationDone, TextDelta
from ..errors import ModelFailure
from ..session.commands import (
    CancelResponse,
    CancelTools,
    CheckSchemas,
    Command,
    DecodeAudio,
    DecodeClips,
    DetectSpeech,
    EndAudio,
    Prefill,
    RunTools,
    StartResponse,
    StopPrefill,
    Transcribe,
)
from ..session.inputs import Generated, Input, SpeechScored, ToolReturned, Transcribed
from ..tools import ToolRunner
from .ingest import Ingest

Deliver = Callable[[Input], Awaitable[None]]
"""Hands an input to the session and carries out its step (the driver's `receive`)."""


class SpeechStream(Protocol):
    """One audio stream's voice activity detector state (`aural.runtime.audio.vad.VadStream`)."""

    def probabilities(self, samples: AudioSamples) -> list[float]:
        """Blocking: the speech probability of every 512-sample window these samples complete."""
        ...


class SpeechModel(Protocol):
    """The voice activity model (`aural.runtime.audio.vad.SileroVad`): a detector state per stream."""

    def stream(self) -> SpeechStream: ...


class CommandRunner:
    """Carries out one session's commands.

    Args:
        engine: the shared engine (out-of-band replies and transcriptions get throwaway sessions of it).
        engine_session: the conversation's own engine session (its resident cache).
        vad: the voice activity model.
        tools: the server tools.
        ingest: the connection's ingest stage.
        deliver: where results go, as session inputs.
        logger: the connection's logger.
    """

    def __init__(
        self,
        engine: Engine,
        engine_session: EngineSession,
        vad: SpeechModel,
        tools: ToolRunner,
        ingest: Ingest,
        deliver: Deliver,
        logger: Any,
    ) -> None:
        self._ingest = ingest
        self._engine = engine
        self._engine_session = engine_session
        self._vad = vad
        self._tools = tools
        self._deliver = deliver
        self._log = logger
        self._generation: Generation | None = None
        self._prefill: asyncio.Task[None] | None = None  # the latest speculative prefill
        self._speech: asyncio.Queue[DetectSpeech] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._tool_calls: dict[asyncio.Task[None], str] = {}  # running server tool calls → their response's id
        self._spawn(self._detect_speech())

    async def run(self, command: Command) -> None:
        """Carry out one command: start its work, or do it at once when it is quick."""
        match command:
            case StartResponse():
                await self._start(command)
            case CancelResponse():
                if self._generation is not None:
                    self._generation.cancel()
            case DetectSpeech():
                self._speech.put_nowait(command)
            case Prefill():  # the engine stops a prefill that a newer request supersedes
                self._prefill = self._spawn(
                    self._engine_session.prefill(command.conversation, command.tools, command.truncation)
                )
            case StopPrefill():
                if self._prefill is not None:
                    self._prefill.cancel()
            case Transcribe():
                self._spawn(self._transcribe(command))
            case RunTools():
                for call in command.calls:
                    task = self._spawn(self._run_tool(call))
                    self._tool_calls[task] = command.response_id
                    task.add_done_callback(self._tool_calls.pop)
            case CancelTools():
                for task, response_id in list(self._tool_calls.items()):
                    if response_id in command.response_ids:
                        task.cancel()
            case DecodeAudio() | EndAudio() | DecodeClips() | CheckSchemas():
                await self._deliver(await self._ingest.run(command))
            case _:
                assert_never(command)

    async def close(self) -> None:
        """The connection ended: cancel everything still running and free the engine sessions."""
        if self._generation is not None:
            self._generation.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._ingest.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _start(self, command: StartResponse) -> None:
        engine_session = self._engine_session
        if not command.in_conversation:  # out of band: leave the conversation's cache alone
            engine_session = await self._engine.open_session()
        generation = engine_session.generate(command.conversation, command.reply_key, command.params)
        self._generation = generation
        own = None if command.in_conversation else engine_session
        self._spawn(self._stream(command.response_id, generation, own))

    async def _stream(self, response_id: str, generation: Generation, own: EngineSession | None) -> None:
        structlog.contextvars.bind_contextvars(response=response_id)  # this task's lines name the response
        try:
            async for event in generation:
                await self._deliver(Generated(response_id, event))
        except Exception:
            self._log.exception("streaming failed", response=response_id)
            failed = GenerationDone("error", error=ModelFailure("The response failed."))
            with contextlib.suppress(Exception):
                await self._deliver(Generated(response_id, failed))
        finally:
            if own is not None:
                await asyncio.shield(own.close())

    async def _run_tool(self, call: FunctionCallItem) -> None:
        output = await self._tools.run(call.name, call.arguments, logger=self._log.bind(call_id=call.call_id))
        await self._deliver(ToolReturned(call.call_id, output))

    async def _detect_speech(self) -> None:
        """Run the voice activity model over new audio in order, off the event loop; audio that piled up
        while the model ran goes through in one call."""
        stream: tuple[int, SpeechStream] | None = None
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
                await self._deliver(SpeechScored(number, tuple(probabilities)))

    async def _transcribe(self, command: Transcribe) -> None:
        """A side pass on a throwaway engine session: the conversation's cache is never touched."""
        engine_session = await self._engine.open_session()
        try:
            key = f"transcription:{command.item_id}"
            async for event in engine_session.generate(command.conversation, key, command.params):
                if isinstance(event, TextDelta | GenerationDone):  # a transcription has no tools: no call events
                    await self._deliver(Transcribed(command.item_id, command.content_index, event))
        finally:
            await asyncio.shield(engine_session.close())
