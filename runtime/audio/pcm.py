"""Raw sample decoders: PCM16 or float32 at any rate, mono or stereo, and G.711 μ-law / A-law.

A decoder is fed the bytes of `input_audio_buffer.append` events as they come and returns the samples it
can already produce; a chunk may end in the middle of a sample. 16 kHz mono needs no resampling; anything
else goes through PyAV's streaming resampler, whose output equals resampling the whole signal once the
final `flush()` has run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import av
import numpy as np

from aural.protocols.models import AudioFormat, PcmaFormat, PcmFormat, PcmuFormat

from ..engine.base import SAMPLE_RATE, AudioSamples
from .base import EMPTY, bad_audio
from .resample import MonoResampler

Encoding = Literal["pcm16", "float32", "pcmu", "pcma"]
MIN_BATCH_MS = 10
"""Audio that needs resampling is decoded once this much has come (or at the end of the stream)."""


def _mulaw_table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + 0x84) << exponent
    return np.where(code & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def _alaw_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


_G711 = {"pcmu": _mulaw_table(), "pcma": _alaw_table()}
_SAMPLE_BYTES = {"pcm16": 2, "float32": 4, "pcmu": 1, "pcma": 1}


@dataclass(frozen=True)
class PcmSpec:
    """The layout of raw samples: their encoding, rate and interleaved channel count."""

    encoding: Encoding
    rate: int
    channels: int = 1
    label: str = "audio/pcm"
    """The declared format, for error messages."""

    @classmethod
    def of(cls, fmt: AudioFormat) -> PcmSpec:
        """The layout a raw wire format declares.

        Raises:
            TypeError: `fmt` is a compressed stream format, not raw samples.
        """
        if isinstance(fmt, PcmuFormat | PcmaFormat):
            return cls("pcmu" if isinstance(fmt, PcmuFormat) else "pcma", 8000, label=fmt.type)
        if not isinstance(fmt, PcmFormat):
            raise TypeError(f"{fmt.type} is not a raw sample format")
        return cls(fmt.encoding or "pcm16", fmt.rate, fmt.channels or 1)

    @property
    def frame_bytes(self) -> int:
        """Bytes per sample frame (one sample of every channel)."""
        return _SAMPLE_BYTES[self.encoding] * self.channels


class PcmDecoder:
    """Decodes one stream of raw samples to 16 kHz mono float32.

    Args:
        fmt: a raw wire format (`audio/pcm`, `audio/pcmu`, `audio/pcma`) or an explicit layout.
    """

    def __init__(self, fmt: AudioFormat | PcmSpec) -> None:
        self.spec = fmt if isinstance(fmt, PcmSpec) else PcmSpec.of(fmt)
        self._carry = b""
        direct = self.spec.rate == SAMPLE_RATE and self.spec.channels == 1
        self._resampler = None if direct else MonoResampler()
        # Tiny appends are gathered before resampling: each resampler call costs ~0.08 ms of its own.
        self._batch_bytes = 0 if direct else self.spec.frame_bytes * (self.spec.rate // 1000) * MIN_BATCH_MS

    def feed(self, data: bytes) -> AudioSamples:
        """Decode a chunk; returns the samples available so far (possibly none).

        Raises:
            AudioError: float32 samples that are not finite numbers.
        """
        data = self._carry + data
        usable = len(data) - len(data) % self.spec.frame_bytes
        if usable < self._batch_bytes:
            self._carry = data
            return EMPTY
        self._carry = data[usable:]
        return self._decoded(data[:usable])

    def flush(self) -> AudioSamples:
        """End of the stream: the samples held back and the resampler's last ones (a trailing partial
        sample is dropped)."""
        usable = len(self._carry) - len(self._carry) % self.spec.frame_bytes
        samples = self._decoded(self._carry[:usable]) if usable else EMPTY
        self._carry = b""
        if self._resampler is None:
            return samples
        return np.concatenate([samples, self._resampler.flush()])

    def close(self) -> None:
        """Nothing to free: raw decoding holds no thread."""

    def _decoded(self, data: bytes) -> AudioSamples:
        samples = self._samples(data)
        if self._resampler is None:
            return samples
        sample_format = "flt" if samples.dtype == np.float32 else "s16"
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format=sample_format, layout="mono" if self.spec.channels == 1 else "stereo"
        )
        frame.sample_rate = self.spec.rate
        return self._resampler.push(frame)

    def _samples(self, data: bytes) -> np.ndarray:
        """Interleaved samples: int16 to be resampled, or float32 ready when no resampling is needed."""
        encoding = self.spec.encoding
        if encoding == "float32":
            samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
            if not np.isfinite(samples).all():
                raise bad_audio(self.spec.label, "float32 samples must be finite numbers (found NaN or infinity).")
            return samples
        pcm = _G711[encoding][np.frombuffer(data, dtype=np.uint8)] if encoding in _G711 else np.frombuffer(data, "<i2")
        if self._resampler is None:
            return (pcm.astype(np.float32) / np.float32(32768.0)).astype(np.float32)
        return pcm.astype(np.int16)
