"""The input audio buffer: decoded 16 kHz samples, addressed by their position in the session's stream.

Positions count every sample decoded since the session began, so that the voice activity detector,
which runs behind the socket on its own thread, and the buffer agree on where speech starts and stops
even while more audio keeps arriving. The buffer holds samples only: the bytes clients send are decoded
off the event loop by the driver's ingest stage, which these commands ask and whose answers come back as
inputs. `streaming` says whether that stage holds undecoded audio of the current stream: a commit, a clear
or a change of format must end the stream first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import AudioFormat

from ..engine.base import SAMPLE_RATE, AudioSamples
from ..errors import AudioError
from .commands import DecodeAudio

MIN_AUDIO_MS = 100
"""The shortest audio that can be committed or sent in an item."""
MIN_AUDIO = MIN_AUDIO_MS * SAMPLE_RATE // 1000


ClipDecoder = Callable[[bytes], AudioSamples]
"""The samples of an audio blob of a client event, decoded off the loop (`client_item`'s `decode`)."""


@dataclass(frozen=True)
class Decoded:
    """What the ingest stage answered for a client event handled again (nothing, the first time): why the
    input stream's last bytes did not decode or were refused, or the event's audio blobs decoded."""

    ended: AudioError | ProtocolError | None = None
    clips: Mapping[bytes, AudioSamples | AudioError] | None = None

    def decoder(self, max_samples: int) -> ClipDecoder:
        """The decoded blobs, each within the buffer's bound."""
        clips = self.clips or {}

        def decoded(data: bytes) -> AudioSamples:
            samples = clips[data]
            if isinstance(samples, AudioError):
                raise samples
            check_bound(samples.size, max_samples)
            return samples

        return decoded


NO_CLIPS = Decoded().decoder(0)
"""For what carries no audio (a tool's output, a continuation)."""


class InputBuffer:
    """Decoded input audio between `start` and `end` (sample positions in the session's stream).

    Args:
        max_samples: the most samples the buffer holds; decoded audio past it is refused.
    """

    def __init__(self, max_samples: int) -> None:
        self._max = max_samples
        self._chunks: list[AudioSamples] = []
        self.start = 0
        self.end = 0
        self.streaming = False

    @property
    def size(self) -> int:
        return self.end - self.start

    def feed(self, data: bytes, fmt: AudioFormat, event_id: str | None) -> DecodeAudio:
        """The command that decodes the next bytes of the stream (their answer goes to `keep`)."""
        self.streaming = True
        return DecodeAudio(data, fmt, event_id)

    def decoded(self, samples: AudioSamples, error: AudioError | None) -> None:
        """Keep newly decoded samples (the answer to `feed`).

        Raises:
            AudioError: `error`, why the bytes did not decode: the ingest stage dropped the stream, and the next
                bytes start a new one.
            ProtocolError: the buffer is full (nothing is kept).
        """
        if error is not None:
            self.streaming = False
            raise error
        check_bound(self.size + samples.size, self._max)
        self._append(samples)

    def ended(self, samples: AudioSamples) -> ProtocolError | None:
        """The stream ended (or failed: the ingest stage dropped it); keep its last samples, or return why
        they are refused (the buffer would pass its bound: nothing of them is kept)."""
        self.streaming = False
        try:
            check_bound(self.size + samples.size, self._max)
        except ProtocolError as exc:
            return exc
        self._append(samples)
        return None

    def take_all(self) -> AudioSamples:
        """Everything the buffer holds, which leaves it (a manual commit).

        Raises:
            ProtocolError: it holds less than `MIN_AUDIO`, which is kept, not lost.
        """
        if self.size < MIN_AUDIO:
            raise ProtocolError(
                ErrorCode.BUFFER_EMPTY,
                f"Error committing input audio buffer: expected at least {MIN_AUDIO_MS} ms of audio, "
                f"but the buffer holds {self.size * 1000 / SAMPLE_RATE:.2f} ms.",
            )
        return self.take(self.start, self.end)

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

    def _append(self, samples: AudioSamples) -> None:
        if samples.size:
            self._chunks.append(samples)
            self.end += samples.size

    def _joined(self) -> AudioSamples:
        if len(self._chunks) > 1:
            self._chunks = [np.concatenate(self._chunks)]
        return self._chunks[0] if self._chunks else np.zeros(0, dtype=np.float32)


def check_bound(samples: int, max_samples: int) -> None:
    """Raises: ProtocolError when `samples` is more audio than the buffer holds."""
    if samples > max_samples:
        raise ProtocolError(
            ErrorCode.BUFFER_FULL,
            f"The input audio buffer holds at most {max_samples // SAMPLE_RATE} s: commit or clear it.",
            param="audio",
        )
