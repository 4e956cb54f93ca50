"""Raw input decoding: G.711 equals FFmpeg's decoders; chunked PCM equals a whole-signal decode at every
rate, sample encoding and channel count; stereo is downmixed to (L+R)/2."""

from __future__ import annotations

import av
import numpy as np
import pytest

from aural.protocols.errors import ErrorCode
from aural.protocols.models import PcmaFormat, PcmFormat, PcmuFormat, StreamFormat
from aural.runtime.audio.container import ContainerDecoder
from aural.runtime.audio.decoders import make_decoder
from aural.runtime.audio.pcm import PcmDecoder
from aural.runtime.audio.wav import WavDecoder
from aural.runtime.errors import AudioError
from aural.runtime.session.wire_errors import wire_error


@pytest.mark.parametrize(("fmt", "codec"), [(PcmuFormat(), "pcm_mulaw"), (PcmaFormat(), "pcm_alaw")])
def test_g711_matches_ffmpeg(fmt: PcmuFormat | PcmaFormat, codec: str) -> None:
    data = bytes(range(256)) * 40
    context = av.CodecContext.create(codec, "r")
    context.sample_rate, context.layout = 8000, "mono"
    expected = np.concatenate([f.to_ndarray().reshape(-1) for f in context.decode(av.Packet(data))])
    resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
    frame = av.AudioFrame.from_ndarray(expected.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    whole = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in [*resampler.resample(frame), *resampler.resample(None)]]
    )
    decoder = PcmDecoder(fmt)
    ours = np.concatenate([decoder.feed(data[:1000]), decoder.feed(data[1000:]), decoder.flush()])
    np.testing.assert_array_equal(ours, whole)


def tone(rate: int, channels: int, encoding: str) -> bytes:
    """A quarter second of 440 Hz, the same on every channel."""
    t = np.arange(rate // 4) / rate
    wave = np.repeat(np.sin(2 * np.pi * 440 * t)[:, None] * 0.4, channels, axis=1)
    return (wave.astype("<f4") if encoding == "float32" else (wave * 32768).astype("<i2")).tobytes()


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
@pytest.mark.parametrize(("channels", "encoding"), [(1, "pcm16"), (2, "pcm16"), (1, "float32"), (2, "float32")])
@pytest.mark.parametrize("chunk", [1, 7, 960, None])
def test_pcm_in_chunks_equals_whole(rate: int, channels: int, encoding: str, chunk: int | None) -> None:
    fmt = PcmFormat.model_validate({"rate": rate, "channels": channels, "encoding": encoding})
    data = tone(rate, channels, encoding)
    whole = PcmDecoder(fmt)
    expected = np.concatenate([whole.feed(data), whole.flush()])
    decoder = PcmDecoder(fmt)
    step = chunk or len(data)
    parts = [decoder.feed(data[i : i + step]) for i in range(0, len(data), step)]
    ours = np.concatenate([*parts, decoder.flush()])
    np.testing.assert_array_equal(ours, expected)
    assert abs(ours.size - 4000) <= 1
    spectrum = np.abs(np.fft.rfft(ours))
    assert abs(np.argmax(spectrum) * 16000 / ours.size - 440) < 3
    assert 0.35 < np.abs(ours).max() < 0.45, "stereo is downmixed to the mean, not summed"


def test_16k_mono_is_exact() -> None:
    pcm = (np.arange(-32768, 32768, 7)).astype("<i2")
    floats = pcm.astype(np.float32) / np.float32(32768.0)
    for fmt, data in [
        (PcmFormat(rate=16000), pcm.tobytes()),
        (PcmFormat(rate=16000, encoding="float32"), floats.astype("<f4").tobytes()),
    ]:
        decoder = PcmDecoder(fmt)
        np.testing.assert_array_equal(np.concatenate([decoder.feed(data[:333]), decoder.feed(data[333:])]), floats)


def test_stereo_is_downmixed_to_the_mean() -> None:
    rng = np.random.default_rng(0)
    left, right = rng.uniform(-0.9, 0.9, 16000), rng.uniform(-0.9, 0.9, 16000)
    data = np.stack([left, right], axis=1).astype("<f4").tobytes()
    decoder = PcmDecoder(PcmFormat(rate=16000, channels=2, encoding="float32"))
    ours = np.concatenate([decoder.feed(data), decoder.flush()])
    np.testing.assert_allclose(ours, (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_float32_is_refused(bad: float) -> None:
    data = np.array([0.1, bad, 0.2], dtype="<f4").tobytes()
    with pytest.raises(AudioError, match=r"audio/pcm.*finite") as caught:
        PcmDecoder(PcmFormat(rate=16000, encoding="float32")).feed(data)
    error = wire_error(caught.value)
    assert error.code == ErrorCode.BAD_AUDIO and error.param == "audio"


def test_the_ga_format_is_echoed_unchanged() -> None:
    assert PcmFormat().model_dump(exclude_none=True) == {"type": "audio/pcm", "rate": 24000}


def test_make_decoder_picks_the_decoder_of_each_format() -> None:
    assert isinstance(make_decoder(PcmFormat()), PcmDecoder)
    assert isinstance(make_decoder(PcmuFormat()), PcmDecoder)
    assert isinstance(make_decoder(StreamFormat(type="audio/wav")), WavDecoder)
    webm = make_decoder(StreamFormat(type="audio/webm"))
    assert isinstance(webm, ContainerDecoder) and webm.label == "audio/webm"
    assert make_decoder(StreamFormat(type="audio/ogg")) is not make_decoder(StreamFormat(type="audio/ogg"))
