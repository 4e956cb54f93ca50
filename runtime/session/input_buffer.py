"""The input audio buffer: decoded 16 kHz samples, addressed by their position in the session's stream.

Positions count every sample decoded since the session began, so that the voice activity detector,
which runs behind the socket on its own thread, and the buffer agree on where speech starts and stops
even while more audio keeps arriving. The decoder is fed chunk by chunk as appends come.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import AudioFormat

from ..audio.base import AudioDecoder
from ..engine.base import SAMPLE_RATE, AudioSamples
from ..errors import AudioError

DecoderFactory = Callable[[AudioFormat], AudioDecoder]
MIN_AUDIO_MS = 100
"""The shortest audio that can be committed or sent in an item."""
MIN_AUDIO = MIN_AUDIO_MS * SAMPLE_RATE // 1000


class InputBuffer:
    """Decoded input audio between `start` and `end` (sample positions in the session's stream).

    Args:
        decoder_factory: makes a decoder for an input format.
        fmt: the format of the audio that will be appended.
        max_samples: the most samples the buffer holds; an append past it is refused.
    """

    def __init__(self, decoder_factory: DecoderFactory, fmt: AudioFormat, max_samples: int) -> None:
        self._factory = decoder_factory
        self._format = fmt
        self._decoder = decoder_factory(fmt)
        self._max = max_samples
        self._chunks: list[AudioSamples] = []
        self.start = 0
        self.end = 0

    @property
    def size(self) -> int:
        return self.end - self.start

    def append(self, data: bytes) -> AudioSamples:
        """Decode a chunk and keep its samples; returns the new samples.

        Raises:
            AudioError: the chunk does not decode (the decoder is then replaced: the next chunk must start
                a new stream).
            ProtocolError: the buffer is full (nothing is kept).
        """
        try:
            samples = self._decoder.feed(data)
        except AudioError:
            self._restart()
            raise
        if self.size + samples.size > self._max:
            raise ProtocolError(
                ErrorCode.BUFFER_FULL,
                f"The input audio buffer holds at most {self._max // SAMPLE_RATE} s: commit or clear it.",
                param="audio",
            )
        self._keep(samples)
        return samples

    def end_stream(self, fmt: AudioFormat | None = None) -> AudioSamples:
        """The stream ends (a commit, a clear or a new format): decode what the decoder still holds and
        start a new decoder, for `fmt` when given. Returns the samples the flush produced."""
        try:
            samples = self._decoder.flush()
        except AudioError:
            self._restart(fmt)
            raise
        self._keep(samples)
        self._restart(fmt)
        return samples

    def peek(self, start: int, end: int) -> AudioSamples:
        """A copy of the samples between two positions (clamped to what the buffer holds)."""
        joined = self._joined()
        return joined[max(0, start - self.start) : max(0, end - self.start)].copy()

    def take(self, start: int, end: int) -> AudioSamples:
        """The samples between two positions; everything before `end` leaves the buffer."""
        samples = self.peek(start, end)
        self.discard_before(end)
        return samples

    def discard_before(self, position: int) -> None:
        """Forget the samples before `position`."""
        cut = min(max(0, position - self.start), self.size)
        if cut:
            joined = self._joined()[cut:]
            self._chunks = [joined] if joined.size else []
            self.start += cut

    def close(self) -> None:
        """The session ends: stop the decoder."""
        self._decoder.close()

    def _keep(self, samples: AudioSamples) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.end += samples.size

    def _joined(self) -> AudioSamples:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32)

    def _restart(self, fmt: AudioFormat | None = None) -> None:
        self._decoder.close()
        self._format = fmt or self._format
        self._decoder = self._factory(self._format)
