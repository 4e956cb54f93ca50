"""Input audio decoders: the wire formats of the GA protocol to 16 kHz mono float32.

PCM16 at any rate and G.711 μ-law / A-law. A decoder is fed the bytes of `input_audio_buffer.append`
events as they come and returns the samples it can already produce; a chunk may end in the middle of a
sample. Resampling uses PyAV's streaming resampler, whose output equals resampling the whole signal
once the final `flush()` has run.
"""

from __future__ import annotations

import av
import numpy as np

from aural.protocols.models import AudioFormat, PcmFormat

from ..engine.base import SAMPLE_RATE, AudioSamples

_EMPTY: AudioSamples = np.zeros(0, dtype=np.float32)


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


_G711 = {"audio/pcmu": _mulaw_table(), "audio/pcma": _alaw_table()}


class PcmDecoder:
    """Decodes one stream of PCM16 or G.711 bytes to 16 kHz mono float32."""

    def __init__(self, fmt: AudioFormat) -> None:
        self._table = _G711.get(fmt.type)
        self.rate = fmt.rate if isinstance(fmt, PcmFormat) else 8000
        self._carry = b""
        self._resampler = (
            None if self.rate == SAMPLE_RATE else av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        )

    def feed(self, data: bytes) -> AudioSamples:
        """Decode a chunk; returns the samples available so far (possibly none)."""
        if self._table is not None:
            pcm = self._table[np.frombuffer(data, dtype=np.uint8)]
        else:
            data = self._carry + data
            usable = len(data) - len(data) % 2
            self._carry = data[usable:]
            pcm = np.frombuffer(data[:usable], dtype="<i2")
        if pcm.size == 0:
            return _EMPTY
        if self._resampler is None:
            return (pcm.astype(np.float32) / 32768.0).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(pcm.astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        return self._resampled(self._resampler.resample(frame))

    def flush(self) -> AudioSamples:
        """End of the stream: the resampler's last samples. The decoder can then be dropped."""
        if self._resampler is None:
            return _EMPTY
        return self._resampled(self._resampler.resample(None))

    @staticmethod
    def _resampled(frames: list[av.AudioFrame]) -> AudioSamples:
        if not frames:
            return _EMPTY
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)
