"""A streaming resampler to the model's input: any rate, mono or stereo → 16 kHz mono float32.

PyAV's (FFmpeg's swresample) fed frame by frame gives exactly what resampling the whole signal gives,
once `flush()` has drained its tail. Stereo is downmixed to (L+R)/2: swresample's default 0.707·(L+R)
is 3 dB louder and can clip.
"""

from __future__ import annotations

import av
import numpy as np

from ..engine.base import SAMPLE_RATE, AudioSamples
from .base import EMPTY


class MonoResampler:
    """Frames in, 16 kHz mono float32 out. Follows a change of rate, layout or sample format mid-stream
    (a chained Ogg stream, AAC switching to SBR) by draining the old resampler and starting a new one."""

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    def push(self, frame: av.AudioFrame) -> AudioSamples:
        """Resample one frame; returns the samples ready so far."""
        setup = (frame.format.name, frame.layout.name, frame.sample_rate)
        drained = EMPTY
        if setup != self._input:
            drained = self.flush()
            self._input = setup
            self._resampler = av.AudioResampler(
                format="flt", layout="mono", rate=SAMPLE_RATE, options={"rematrix_maxval": "1.0"}
            )
        assert self._resampler is not None
        samples = _joined(self._resampler.resample(frame))
        return np.concatenate([drained, samples]) if drained.size else samples

    def flush(self) -> AudioSamples:
        """The resampler's last samples (without this the final 16-32 samples are missing)."""
        if self._resampler is None:
            return EMPTY
        resampler, self._resampler, self._input = self._resampler, None, None
        return _joined(resampler.resample(None))


def _joined(frames: list[av.AudioFrame]) -> AudioSamples:
    if not frames:
        return EMPTY
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32, copy=False)
