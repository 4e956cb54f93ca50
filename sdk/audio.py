"""Turning arrays, files and raw bytes into the wire's audio format: PCM16 little-endian mono.

The GA Realtime protocol names one PCM rate, 24 kHz (`WIRE_RATE`), which is what these helpers
produce unless asked for another. `encode_audio` also writes Aural's PCM extensions (see
`aural.protocols.models.PcmFormat`): float32 samples, and two interleaved channels, both holding the
(downmixed) signal, so that the server's own (L+R)/2 downmix gives back exactly the mono signal.

Every conversion goes through one PyAV resampler, flushed at the end, so converting a signal in one
go or after decoding it from a file gives the same samples.

These functions are CPU-bound and synchronous; `Connection` runs them in a worker thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from itertools import chain
from typing import Any, Literal, TypeAlias

import av
import numpy as np
import numpy.typing as npt

WIRE_RATE = 24000
"""The PCM sample rate of the GA protocol's default input format (`audio/pcm`, 24 kHz)."""

AudioSource: TypeAlias = npt.NDArray[Any] | bytes | str | os.PathLike[str]
"""What the SDK accepts as audio: a numpy array, wire-format bytes, or the path of an audio file."""

Encoding: TypeAlias = Literal["pcm16", "float32"]
"""A PCM sample encoding: signed 16-bit (the GA one) or IEEE 754 float32 (an Aural extension)."""

_SAMPLE_FORMATS: dict[str, tuple[str, str]] = {"pcm16": ("s16", "<i2"), "float32": ("flt", "<f4")}
"""PyAV's sample format and numpy's little-endian dtype for each encoding."""

# With the default matrix FFmpeg may mix stereo to 0.707·(L+R), which is louder and can clip;
# a maximum of 1.0 gives the plain average (L+R)/2.
_DOWNMIX_OPTIONS = {"rematrix_maxval": "1.0"}


def _resample(frames: Iterable[Any], rate: int, *, channels: int = 1, encoding: Encoding = "pcm16") -> bytes:
    """Resample PyAV audio frames to mono PCM at `rate`, flushing the resampler at the end; with
    `channels=2`, each mono sample is then written twice (interleaved left and right)."""
    if channels not in (1, 2):
        raise ValueError(f"audio must have 1 or 2 channels, not {channels}")
    if encoding not in _SAMPLE_FORMATS:
        raise ValueError(f"unknown PCM encoding {encoding!r}: use one of {', '.join(_SAMPLE_FORMATS)}")
    av_format, dtype = _SAMPLE_FORMATS[encoding]
    resampler = av.AudioResampler(format=av_format, layout="mono", rate=rate, options=_DOWNMIX_OPTIONS)
    out = bytearray()
    # Without the final `None` (the flush) the last few dozen samples would be lost.
    for frame in chain(frames, [None]):
        for resampled in resampler.resample(frame):
            samples = resampled.to_ndarray().reshape(-1).astype(dtype, copy=False)
            out += np.repeat(samples, channels).tobytes()
    return bytes(out)


def _to_mono_float(audio: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """Float32 mono samples in [-1, 1] from a float or int16 array, 1-D or (frames, channels)."""
    if audio.dtype == np.int16:
        samples = audio.astype(np.float32) / 32768.0
    elif np.issubdtype(audio.dtype, np.floating):
        samples = audio.astype(np.float32, copy=False)
    else:
        raise TypeError(f"audio arrays must be float (in [-1, 1]) or int16, not {audio.dtype}")
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    elif samples.ndim != 1:
        raise ValueError(f"audio arrays must be 1-D or (frames, channels), not of shape {audio.shape}")
    return np.ascontiguousarray(samples)


def to_pcm16(audio: npt.NDArray[Any], sample_rate: int, *, rate: int = WIRE_RATE) -> bytes:
    """Convert an array of samples to PCM16 little-endian mono bytes at `rate`.

    Args:
        audio: float samples in [-1, 1] (values beyond are clipped) or int16 samples; 1-D for mono,
            or 2-D of shape (frames, channels), which is downmixed to the average of the channels.
        sample_rate: the rate of `audio`, in Hz.
        rate: the rate of the result, in Hz.

    Raises:
        TypeError: for an array that is neither float nor int16.
        ValueError: for an array of more than two dimensions or a rate that is not positive.
    """
    return _encode_array(audio, sample_rate, rate=rate)


def _encode_array(
    audio: npt.NDArray[Any], sample_rate: int, *, rate: int, channels: int = 1, encoding: Encoding = "pcm16"
) -> bytes:
    if sample_rate <= 0 or rate <= 0:
        raise ValueError(f"sample rates must be positive, got {sample_rate} and {rate}")
    samples = _to_mono_float(audio)
    if samples.size == 0:
        return b""
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = sample_rate
    return _resample([frame], rate, channels=channels, encoding=encoding)


def read_audio_file(path: str | os.PathLike[str], *, rate: int = WIRE_RATE) -> bytes:
    """Decode the first audio stream of a file (any format PyAV reads) to PCM16 mono at `rate`.

    Raises:
        ValueError: the file has no audio stream.
        av.FFmpegError: the file cannot be opened or decoded (`FileNotFoundError` when missing).
    """
    return _encode_file(path, rate=rate)


def _encode_file(path: str | os.PathLike[str], *, rate: int, channels: int = 1, encoding: Encoding = "pcm16") -> bytes:
    with av.open(os.fspath(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{os.fspath(path)!r} has no audio stream")
        return _resample(container.decode(audio=0), rate, channels=channels, encoding=encoding)


def encode_audio(
    audio: AudioSource,
    sample_rate: int | None = None,
    *,
    rate: int = WIRE_RATE,
    channels: int = 1,
    encoding: Encoding = "pcm16",
) -> bytes:
    """Convert any `AudioSource` to little-endian PCM at `rate`: PCM16 mono unless told otherwise.

    Args:
        audio: a numpy array (see `to_pcm16`), raw bytes, or the path of an audio file.
        sample_rate: required for arrays. For bytes: absent means they are already in the wire
            format and are returned unchanged; given, they are read as PCM16 little-endian mono at
            that rate and resampled. Not allowed for files, whose own header gives their rate.
        rate: the rate of the result, in Hz.
        channels: 1 for mono; 2 for interleaved stereo, whose two channels both hold the signal
            (a stereo source is downmixed first, as for mono).
        encoding: "pcm16" (signed 16-bit) or "float32" (full scale ±1.0).

    Raises:
        ValueError: `sample_rate` missing for an array or given for a file, a channel count other
            than 1 or 2, an unknown encoding, or as for the conversion functions.
    """
    if isinstance(audio, bytes):
        if sample_rate is None:
            return audio
        audio = np.frombuffer(audio, dtype="<i2")
    if isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise ValueError("sample_rate is required for audio given as an array")
        return _encode_array(audio, sample_rate, rate=rate, channels=channels, encoding=encoding)
    if sample_rate is not None:
        raise ValueError("sample_rate does not apply to audio files: their header gives it")
    return _encode_file(audio, rate=rate, channels=channels, encoding=encoding)
