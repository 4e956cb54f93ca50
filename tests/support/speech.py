"""Real speech for tests: espeak-ng utterances at 16 kHz, joined by silences of known length.

espeak-ng (Debian's package; `.ci/run` installs it) writes 22.05 kHz WAV with a little silence around
each phrase; that silence is trimmed so that the returned segments are where speech truly is.
"""

from __future__ import annotations

import functools
import io
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import av
import numpy as np
import numpy.typing as npt

RATE = 16000
_SILENT = 1e-3  # |sample| below this is silence when trimming


@functools.lru_cache(maxsize=64)
def _espeak(text: str, voice: str) -> bytes:
    return subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True).stdout


def speak(text: str, *, voice: str = "en-us", rate: int = RATE) -> npt.NDArray[np.float32]:
    """`text` spoken by espeak-ng, mono float32 at `rate`, leading and trailing silence trimmed."""
    with av.open(io.BytesIO(_espeak(text, voice)), format="wav") as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        frames = [out for frame in container.decode(audio=0) for out in resampler.resample(frame)]
        frames += resampler.resample(None)
    samples = np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > _SILENT)
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples[:0]


@dataclass(frozen=True)
class Utterance:
    """Speech at `rate` and the (start, end) seconds of each phrase in it."""

    samples: npt.NDArray[np.float32]
    segments: list[tuple[float, float]]
    rate: int = RATE

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate

    def pcm16(self) -> bytes:
        """The samples as 16-bit little-endian PCM."""
        return (np.clip(self.samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def utterance(
    phrases: Sequence[str], gaps: Sequence[float], *, lead: float = 0.5, tail: float = 1.0, rate: int = RATE
) -> Utterance:
    """`phrases` separated by `gaps` seconds of digital silence, with `lead` before and `tail` after."""
    assert len(gaps) == len(phrases) - 1
    pieces = [np.zeros(int(lead * rate), np.float32)]
    segments, position = [], int(lead * rate)
    for index, phrase in enumerate(phrases):
        spoken = speak(phrase, rate=rate)
        segments.append((position / rate, (position + len(spoken)) / rate))
        pieces.append(spoken)
        position += len(spoken)
        pause = gaps[index] if index < len(gaps) else tail
        pieces.append(np.zeros(int(pause * rate), np.float32))
        position += int(pause * rate)
    return Utterance(np.concatenate(pieces), segments, rate)
