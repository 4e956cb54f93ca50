"""The ingest stage: one connection's input prepared off the event loop, in order: audio decoded and
resampled, tool schemas checked.

Decoding costs time in proportion to what a client sends: a 4 MB Ogg/Opus blob takes about a second, and
ending a compressed stream waits for its demuxer thread. So the session never decodes: it asks
(`DecodeAudio`, `EndAudio`, `DecodeClips`), and `Ingest` answers on a thread of its own, one command
after another, with the input that brings the samples back. The driver awaits each answer before it
reads the connection's next message, so a connection's audio stays in order while every other
connection, and `/healthz`, go on being served.

Tool schemas are the same kind of work: checking that one is a JSON Schema the model can enforce compiles its
grammar (milliseconds each; 64 tools held the loop for close to a second), so the session asks
(`CheckSchemas`) and gets its verdicts back (`SchemasChecked`).

`answer` is the blocking work itself (what tests call directly); `run` is the same, awaited off the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import assert_never

import numpy as np

from aural.protocols.models import AudioFormat

from ..audio.base import EMPTY, MAX_SAMPLES, AudioDecoder
from ..audio.decoders import make_decoder
from ..engine.base import AudioSamples, SchemaCheck
from ..errors import AudioError
from ..session.commands import CheckSchemas, Decode, DecodeAudio, DecodeClips, EndAudio
from ..session.inputs import AudioDecoded, AudioEnded, ClipsDecoded, SchemasChecked
from ..session.tool_calls import parameters_problem

DecoderFactory = Callable[[AudioFormat, int], AudioDecoder]
"""Makes a decoder for an input format that holds at most so many decoded samples (`make_decoder`)."""
Answer = AudioDecoded | AudioEnded | ClipsDecoded | SchemasChecked


class Ingest:
    """Prepares one connection's input: decodes the live stream of appends and whole blobs of items, and
    checks tool schemas.

    Args:
        enforceable: whether the model can enforce a schema while decoding (`ModelCapabilities.check_schema`).
        max_samples: the most samples one answer may hold (the session's input buffer bound): a stream or a
            blob that decodes to more fails as soon as it does, so a compression bomb costs no more memory.
        decoder_factory: makes a decoder for an input format.
    """

    def __init__(
        self, enforceable: SchemaCheck, max_samples: int = MAX_SAMPLES, decoder_factory: DecoderFactory = make_decoder
    ) -> None:
        self._enforceable = enforceable
        self._max = max_samples
        self._factory = decoder_factory
        self._stream: tuple[AudioFormat, AudioDecoder] | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")

    async def run(self, command: Decode) -> Answer:
        """`answer`, on the ingest thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self.answer, command)

    def answer(self, command: Decode) -> Answer:
        """Do what `command` asks for (blocking); returns the input that brings the result back."""
        match command:
            case DecodeAudio():
                return self._feed(command)
            case EndAudio():
                samples, error = self._end()
                return AudioEnded(samples, error, command.resume)
            case DecodeClips():
                return ClipsDecoded({clip: self._whole(clip, command.format) for clip in command.clips}, command.resume)
            case CheckSchemas():
                verdicts = {key: parameters_problem(schema, self._enforceable) for key, schema in command.schemas}
                return SchemasChecked(verdicts, command.resume)
            case _:
                assert_never(command)

    async def close(self) -> None:
        """The connection ended: abandon the live stream (its decoder thread stops) and the ingest thread."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._drop)
        self._thread.shutdown(wait=False)

    def _feed(self, command: DecodeAudio) -> AudioDecoded:
        if self._stream is None or self._stream[0] != command.format:
            self._drop()
            self._stream = (command.format, self._factory(command.format, self._max))
        try:
            return AudioDecoded(self._stream[1].feed(command.data), None, command.event_id)
        except AudioError as exc:  # the decoder is spent: the next bytes start a new stream
            self._drop()
            return AudioDecoded(EMPTY, exc, command.event_id)

    def _end(self) -> tuple[AudioSamples, AudioError | None]:
        if self._stream is None:
            return EMPTY, None
        try:
            return self._stream[1].flush(), None
        except AudioError as exc:
            return EMPTY, exc
        finally:
            self._drop()

    def _whole(self, clip: bytes, fmt: AudioFormat) -> AudioSamples | AudioError:
        decoder = self._factory(fmt, self._max)
        try:
            return np.concatenate([decoder.feed(clip), decoder.flush()])
        except AudioError as exc:
            return exc
        finally:
            decoder.close()

    def _drop(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None
