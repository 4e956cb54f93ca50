"""The audio helpers: arrays, bytes and files of several formats to PCM16 mono at 24 kHz; PyAV only for
compressed files."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pytest

from aural.sdk import WIRE_RATE, encode_audio, read_audio_file, to_pcm16
from aural.sdk.audio import resample

if TYPE_CHECKING:
    from tests.sdk.conftest import AudioWriter


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> npt.NDArray[np.float64]:
    return amplitude * np.sin(2 * np.pi * freq * np.arange(round(rate * seconds)) / rate)


def pcm(data: bytes) -> npt.NDArray[np.int16]:
    return np.frombuffer(data, dtype="<i2")


def peak_hz(samples: npt.NDArray[Any], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum)) * rate / len(samples)


def test_int16_mono_at_the_wire_rate_is_unchanged() -> None:
    samples = np.random.default_rng(0).integers(-32768, 32768, 5000).astype(np.int16)
    assert to_pcm16(samples, WIRE_RATE) == samples.astype("<i2").tobytes()


def test_float_is_scaled_by_32768_and_clipped() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1 / 32768, -1.0, 1.0, 1.5, -1.5], dtype=np.float32)
    assert pcm(to_pcm16(samples, WIRE_RATE)).tolist() == [0, 16384, -16384, 1, -32768, 32767, 32767, -32768]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_stereo_is_downmixed_to_the_average_of_the_channels(dtype: type[np.generic]) -> None:
    left = np.array([0, 1000, -2000, 30000, 400])
    right = np.array([0, 3000, 2000, 30000, -600])
    stereo = np.stack([left, right], axis=1)
    samples = stereo.astype(np.int16) if dtype is np.int16 else (stereo / 32768).astype(dtype)
    assert pcm(to_pcm16(samples, WIRE_RATE)).tolist() == ((left + right) // 2).tolist()


@pytest.mark.parametrize("rate", [8000, 16000, 44100, 48000])
def test_resampling_keeps_duration_and_frequency(rate: int) -> None:
    out = pcm(to_pcm16(sine(440, rate, 1.5), rate))
    assert abs(len(out) - 36000) <= 2
    assert peak_hz(out, WIRE_RATE) == pytest.approx(440, abs=1)
    assert np.abs(out).max() == pytest.approx(16384, rel=0.02)


def test_resampling_to_another_rate() -> None:
    out = pcm(to_pcm16(sine(440, 48000, 1.0), 48000, rate=16000))
    assert abs(len(out) - 16000) <= 2
    assert peak_hz(out, 16000) == pytest.approx(440, abs=1)


@pytest.mark.parametrize(("source", "target"), [(48000, 16000), (44100, 24000), (24000, 16000)])
def test_resampling_down_filters_out_what_the_target_rate_cannot_hold(source: int, target: int) -> None:
    above = resample(sine(0.6 * target, source, 1.0).astype(np.float32), source, target)
    assert np.abs(above[100:-100]).max() < 1e-3, "a tone above the target's Nyquist frequency does not fold back"
    kept = resample(sine(0.4 * target, source, 1.0).astype(np.float32), source, target)
    assert np.sqrt(np.mean(kept[100:-100] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01), "one below is kept"


def test_wav_file_matches_a_whole_signal_conversion(write_audio: AudioWriter) -> None:
    # Left only: the average of the channels halves it, where a 0.707·(L+R) mix would not.
    left = np.round(sine(440, 16000, 1.5) * 32767).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    path = write_audio("tone.wav", "pcm_s16le", stereo, 16000)
    decoded = read_audio_file(path)
    assert decoded == to_pcm16(stereo, 16000)
    assert len(decoded) == 2 * 36000
    assert np.abs(pcm(decoded)).max() == pytest.approx(8192, rel=0.02)


@pytest.mark.parametrize(
    ("name", "codec", "rate", "channels"),
    [
        ("tone.ogg", "libopus", 48000, 2),
        ("tone.opus", "libopus", 48000, 1),
        ("tone.mp3", "libmp3lame", 44100, 2),
        ("tone.flac", "flac", 22050, 1),
    ],
)
def test_compressed_files_decode_to_the_same_tone(
    write_audio: AudioWriter, name: str, codec: str, rate: int, channels: int
) -> None:
    tone = np.round(sine(440, rate, 1.5) * 32767).astype(np.int16)
    path = write_audio(name, codec, np.repeat(tone[:, None], channels, axis=1), rate)
    out = pcm(read_audio_file(str(path)))
    assert abs(len(out) - 36000) <= 2
    assert peak_hz(out, WIRE_RATE) == pytest.approx(440, abs=1)
    rms = np.sqrt(np.mean(out[2400:-2400].astype(np.float64) ** 2))
    assert rms == pytest.approx(16384 / np.sqrt(2), rel=0.07)  # lame's default MP3 comes back 5% quieter


def test_bytes_without_a_rate_pass_through() -> None:
    assert encode_audio(b"\x01\x02\x03") == b"\x01\x02\x03"


def test_bytes_with_a_rate_are_read_as_pcm16_and_resampled() -> None:
    samples = np.round(sine(440, 16000, 0.5) * 32767).astype(np.int16)
    out = encode_audio(samples.astype("<i2").tobytes(), 16000)
    assert out == to_pcm16(samples, 16000)
    assert len(out) == 2 * 12000


def test_encode_audio_reads_files(write_audio: AudioWriter) -> None:
    samples = np.zeros((8000, 1), dtype=np.int16)
    path = write_audio("silence.wav", "pcm_s16le", samples, 8000)
    assert encode_audio(path, rate=16000) == bytes(2 * 16000)


def test_files_become_float32_stereo_holding_the_mono_signal(write_audio: AudioWriter) -> None:
    samples = np.round(sine(440, 16000, 0.5) * 32767).astype(np.int16).reshape(-1, 1)
    path = write_audio("tone.wav", "pcm_s16le", samples, 16000)
    frames = np.frombuffer(encode_audio(path, rate=16000, channels=2, encoding="float32"), "<f4").reshape(-1, 2)
    mono = pcm(read_audio_file(path, rate=16000)).astype(np.float32) / 32768
    assert (frames[:, 0] == frames[:, 1]).all()
    np.testing.assert_allclose(frames[:, 0], mono, atol=1e-6)


def test_empty_array_gives_no_bytes() -> None:
    assert to_pcm16(np.zeros(0, dtype=np.float32), 16000) == b""


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: encode_audio(np.zeros(10)), ValueError),
        (lambda: encode_audio("x.wav", 16000), ValueError),
        (lambda: to_pcm16(np.zeros(10, dtype=np.int32), 16000), TypeError),
        (lambda: to_pcm16(np.zeros((2, 2, 2)), 16000), ValueError),
        (lambda: to_pcm16(np.zeros(10), 0), ValueError),
        (lambda: encode_audio(np.zeros(10), 16000, channels=3), ValueError),
        (lambda: encode_audio(np.zeros(10), 16000, encoding="int8"), ValueError),  # type: ignore[arg-type]
    ],
)
def test_bad_input_is_refused(call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call()


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_audio_file(tmp_path / "missing.wav")


def _write_wav(path: Path, data: bytes, width: int, channels: int, rate: int) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(data)
    return path


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_wav_files_of_every_width_read_without_pyav(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    tone = sine(440, 16000, 0.5)
    full_scale = 2 ** (8 * width - 1)
    ints = np.round(tone * (full_scale - 1)).astype(np.int64)
    if width == 1:
        data = (ints + 128).astype(np.uint8).tobytes()
    else:
        data = b"".join(int(value).to_bytes(width, "little", signed=True) for value in np.repeat(ints, 2))
    path = _write_wav(tmp_path / "tone.wav", data, width, 1 if width == 1 else 2, 16000)
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    out = pcm(read_audio_file(path, rate=16000)).astype(np.float64) / 32768
    assert np.abs(out - tone).max() < (2 / 128 if width == 1 else 1 / 16384)


def test_without_pyav_arrays_bytes_and_wav_work_and_compressed_files_name_the_extra(
    write_audio: AudioWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tone = np.round(sine(440, 16000, 0.5) * 32767).astype(np.int16)
    mp3 = write_audio("tone.mp3", "libmp3lame", tone.reshape(-1, 1), 16000)
    wav = _write_wav(tmp_path / "tone.wav", tone.astype("<i2").tobytes(), 2, 1, 16000)
    monkeypatch.setitem(sys.modules, "av", None)
    assert encode_audio(tone, 16000) == encode_audio(tone.astype("<i2").tobytes(), 16000) == read_audio_file(wav)
    with pytest.raises(ImportError, match=r"tone.mp3' is not a PCM WAV file: .*pip install 'aural\[audio\]'"):
        read_audio_file(mp3)
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("not audio")
    with pytest.raises(ImportError, match=r"aural\[audio\]"):
        encode_audio(not_audio)


def test_the_sdk_imports_no_pyav_and_pip_install_aural_pulls_none() -> None:
    probe = "import sys, aural.sdk, aural.sdk.audio; print('av' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "False\n"
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    pyav = [name for name in project["dependencies"] if name.startswith("av")]
    assert pyav == [], "the SDK alone needs no FFmpeg"
    extras = project["optional-dependencies"]
    assert any(name.startswith("av") for name in extras["audio"]) and any(
        name.startswith("av") for name in extras["runtime"]
    )
