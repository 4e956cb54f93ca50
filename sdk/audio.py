"""Turning arrays, files and raw bytes into the wire's audio format: PCM16 little-endian mono.

The GA Realtime protocol names one PCM rate, 24 kHz (`WIRE_RATE`), which is what these helpers
produce unless asked for another. `encode_audio` also writes Aural's PCM extensions (see
`aural.protocols.models.PcmFormat`): float32 samples, and two interleaved channels, both holding the
(downmixed) signal, so that the server's own (L+R)/2 downmix gives back exactly the mono signal.

Arrays, raw PCM and PCM WAV files need numpy alone. Compressed files (MP3, Ogg/Opus, FLAC, M4A...) and
WAV files of float samples are decoded by PyAV, an optional dependency (`pip install 'aural[audio]'`),
imported only when such a file is read. Every signal, whatever its source, is downmixed to mono and then
resampled by one windowed-sinc resampler (`resample`), so converting a signal in one go or after reading
it from a file gives the same samples.

These functions are CPU-bound and synchronous; `Connection` runs them in a worker thread.
"""

from __future__ import annotations

import functools
import math
import os
import wave
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

WIRE_RATE = 24000
"""The PCM sample rate of the GA protocol's default input format (`audio/pcm`, 24 kHz)."""

AUDIO_EXTRA = "aural[audio]"
"""The install extra that brings PyAV, which compressed files need."""

AudioSource: TypeAlias = npt.NDArray[Any] | bytes | str | os.PathLike[str]
"""What the SDK accepts as audio: a numpy array, wire-format bytes, or the path of an audio file."""

Encoding: TypeAlias = Literal["pcm16", "float32"]
"""A PCM sample encoding: signed 16-bit (the GA one) or IEEE 754 float32 (an Aural extension)."""

Samples: TypeAlias = npt.NDArray[np.float32]

_DTYPES: dict[str, str] = {"pcm16": "<i2", "float32": "<f4"}
"""numpy's little-endian dtype for each encoding."""

_ZERO_CROSSINGS = 16
"""Half the resampling filter's length, in zero crossings of its sinc: ~0.1 dB ripple, a sharp cutoff."""
_KAISER_BETA = 8.6
"""The Kaiser window's shape: about 80 dB of stopband attenuation."""
_BLOCK = 1 << 15
"""Output samples computed at once: bounds the resampler's memory whatever the signal's length."""


def resample(samples: Samples, source: int, target: int) -> Samples:
    """Mono float32 samples at rate `source` resampled to rate `target`, as one whole signal.

    A polyphase windowed-sinc filter (Kaiser) at the rates' exact ratio; the result has
    ceil(len(samples) · target / source) samples, aligned with the input (no delay).

    Raises:
        ValueError: a rate that is not positive.
    """
    if source <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {source} and {target}")
    if source == target or samples.size == 0:
        return samples
    common = math.gcd(source, target)
    up, down = target // common, source // common
    taps = _polyphase_filter(up, down)
    width = taps.shape[1]
    half = _ZERO_CROSSINGS * max(up, down)
    padded = np.concatenate([np.zeros(width, np.float32), samples, np.zeros(width, np.float32)])
    out = np.empty(-(-samples.size * up // down), np.float32)
    offsets = np.arange(width)
    for start in range(0, out.size, _BLOCK):
        # Output n sits at n·down on the upsampled grid: it sums input k with the filter's tap n·down + half - k·up.
        position = np.arange(start, min(start + _BLOCK, out.size), dtype=np.int64) * down + half
        newest, phase = np.divmod(position, up)
        inputs = padded[(newest + width)[:, None] - offsets]
        out[start : start + position.size] = np.einsum("ij,ij->i", taps[phase], inputs)
    return out


@functools.lru_cache(maxsize=16)
def _polyphase_filter(up: int, down: int) -> npt.NDArray[np.float32]:
    """The low-pass filter for resampling by up/down, split in `up` phases: row p holds taps p, p + up, ..."""
    half = _ZERO_CROSSINGS * max(up, down)
    cutoff = 1.0 / max(up, down)  # of the upsampled rate's Nyquist: the lower of the two rates' Nyquist
    t = np.arange(-half, half + 1, dtype=np.float64)
    taps = up * cutoff * np.sinc(cutoff * t) * np.kaiser(t.size, _KAISER_BETA)
    width = -(-t.size // up)
    return np.pad(taps, (0, width * up - t.size)).reshape(width, up).T.astype(np.float32)


def _to_mono_float(audio: npt.NDArray[Any]) -> Samples:
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


def _to_pcm(samples: Samples, *, channels: int, encoding: Encoding) -> bytes:
    """Mono samples written as little-endian PCM of `encoding`; with `channels=2`, each sample twice."""
    if channels not in (1, 2):
        raise ValueError(f"audio must have 1 or 2 channels, not {channels}")
    if encoding not in _DTYPES:
        raise ValueError(f"unknown PCM encoding {encoding!r}: use one of {', '.join(_DTYPES)}")
    if encoding == "pcm16":
        samples = np.clip(np.round(samples * 32768.0), -32768, 32767)
    return np.repeat(samples.astype(_DTYPES[encoding]), channels).tobytes()


def _encode_samples(samples: Samples, sample_rate: int, *, rate: int, channels: int, encoding: Encoding) -> bytes:
    return _to_pcm(resample(samples, sample_rate, rate), channels=channels, encoding=encoding)


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
    return _encode_samples(_to_mono_float(audio), sample_rate, rate=rate, channels=1, encoding="pcm16")


def read_audio_file(path: str | os.PathLike[str], *, rate: int = WIRE_RATE) -> bytes:
    """Decode an audio file to PCM16 mono at `rate`: a PCM WAV file with numpy alone, anything else with
    PyAV (its first audio stream).

    Raises:
        FileNotFoundError: the file does not exist.
        ImportError: the file is not a PCM WAV file and PyAV is not installed (`pip install 'aural[audio]'`).
        ValueError: the file has no audio stream.
        av.FFmpegError: PyAV cannot open or decode the file.
    """
    samples, sample_rate = _read_file(path)
    return _encode_samples(samples, sample_rate, rate=rate, channels=1, encoding="pcm16")


def _read_file(path: str | os.PathLike[str]) -> tuple[Samples, int]:
    """A file's mono samples and their rate."""
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            return _wav_samples(wav), wav.getframerate()
    except (wave.Error, EOFError):  # not RIFF WAVE, or not integer PCM (float samples, extensible...)
        return _decode_with_pyav(path)


def _wav_samples(wav: wave.Wave_read) -> Samples:
    """The mono samples of a PCM WAV file of 8, 16, 24 or 32-bit integers."""
    data = wav.readframes(wav.getnframes())
    width = wav.getsampwidth()
    if width == 2:
        values: npt.NDArray[Any] = np.frombuffer(data, "<i2")
    elif width == 1:
        values = (np.frombuffer(data, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        padded = np.zeros((len(data) // 3, 4), np.uint8)
        padded[:, 1:] = np.frombuffer(data, np.uint8).reshape(-1, 3)  # the low byte left 0: int32 scale
        values = padded.view("<i4").reshape(-1).astype(np.float32) / 2.0**31
    elif width == 4:
        values = np.frombuffer(data, "<i4").astype(np.float32) / 2.0**31
    else:
        raise wave.Error(f"unsupported sample width: {width} bytes")
    return _to_mono_float(values.reshape(-1, wav.getnchannels()))


def _decode_with_pyav(path: str | os.PathLike[str]) -> tuple[Samples, int]:
    """The mono samples of a file's first audio stream, and their rate, decoded by PyAV."""
    try:
        import av
    except ImportError as exc:
        raise ImportError(
            f"{os.fspath(path)!r} is not a PCM WAV file: reading it needs PyAV (pip install '{AUDIO_EXTRA}')"
        ) from exc
    with av.open(os.fspath(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{os.fspath(path)!r} has no audio stream")
        chunks: list[Samples] = []
        mixer = None
        rate = 0
        for frame in container.decode(audio=0):
            if mixer is None:  # to float mono at the stream's own rate; `resample` changes the rate
                rate = frame.sample_rate
                # FFmpeg's default matrix mixes stereo to 0.707·(L+R); a maximum of 1.0 gives (L+R)/2.
                mixer = av.AudioResampler(format="flt", layout="mono", rate=rate, options={"rematrix_maxval": "1.0"})
            chunks += [mixed.to_ndarray().reshape(-1) for mixed in mixer.resample(frame)]
        if mixer is not None:  # without the flush the last samples would be lost
            chunks += [mixed.to_ndarray().reshape(-1) for mixed in mixer.resample(None)]
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    return samples, rate or WIRE_RATE


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
        audio: a numpy array (see `to_pcm16`), raw bytes, or the path of an audio file (see
            `read_audio_file`).
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
        ImportError: as for `read_audio_file`.
    """
    if isinstance(audio, bytes):
        if sample_rate is None:
            return audio
        audio = np.frombuffer(audio, dtype="<i2")
    if isinstance(audio, np.ndarray):
        if sample_rate is None:
            raise ValueError("sample_rate is required for audio given as an array")
        samples = _to_mono_float(audio)
    else:
        if sample_rate is not None:
            raise ValueError("sample_rate does not apply to audio files: their header gives it")
        samples, sample_rate = _read_file(audio)
    return _encode_samples(samples, sample_rate, rate=rate, channels=channels, encoding=encoding)
