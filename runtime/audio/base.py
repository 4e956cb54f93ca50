"""What every input audio decoder is: the `AudioDecoder` protocol, and the error it raises.

Free of PyAV: the decoders that need FFmpeg import it themselves.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..engine.base import SAMPLE_RATE, AudioSamples
from ..errors import AudioError

EMPTY: AudioSamples = np.zeros(0, dtype=np.float32)
MAX_SAMPLES = 15 * 60 * SAMPLE_RATE
"""The default bound on the decoded samples a decoder holds between two calls: the session's input buffer
holds no more (15 minutes, as OpenAI's)."""


class AudioDecoder(Protocol):
    """One input audio stream in a declared format, decoded to 16 kHz mono float32 as its bytes arrive.

    `feed` and `flush` raise `AudioError` for input that is not what was declared; the decoder is then spent
    and must be closed and replaced.
    """

    def feed(self, data: bytes) -> AudioSamples:
        """Take the next bytes (any length); return the samples decoded so far that were not yet
        returned (maybe none). Never blocks for long."""
        ...

    def flush(self) -> AudioSamples:
        """End of the stream: every sample not yet returned. The decoder is then done."""
        ...

    def close(self) -> None:
        """Abandon the stream (idempotent): stop any thread and free its resources; no output."""
        ...


def bad_audio(label: str, problem: str) -> AudioError:
    """The error for a stream that is not valid `label` audio (`label` is the declared format, e.g.
    'audio/ogg'); `problem` is a sentence saying what was wrong."""
    return AudioError(f"Input audio declared as {label}: {problem}")
