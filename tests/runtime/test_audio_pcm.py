"""Input decoding: G.711 equals FFmpeg's decoders; chunked PCM equals a whole-signal decode."""

from __future__ import annotations

import av
import numpy as np
import pytest

from aural.protocols.models import PcmaFormat, PcmFormat, PcmuFormat
from aural.runtime.audio.pcm import PcmDecoder


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


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100, 48000])
@pytest.mark.parametrize("chunk", [1, 7, 960, None])
def test_pcm_in_chunks_equals_whole(rate: int, chunk: int | None) -> None:
    t = np.arange(rate // 2) / rate
    data = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2").tobytes()
    whole = PcmDecoder(PcmFormat(rate=rate))
    expected = np.concatenate([whole.feed(data), whole.flush()])
    decoder = PcmDecoder(PcmFormat(rate=rate))
    step = chunk or len(data)
    parts = [decoder.feed(data[i : i + step]) for i in range(0, len(data), step)]
    ours = np.concatenate([*parts, decoder.flush()])
    np.testing.assert_array_equal(ours, expected)
    assert abs(ours.size - 8000) <= 1
    spectrum = np.abs(np.fft.rfft(ours))
    assert abs(np.argmax(spectrum) * 16000 / ours.size - 440) < 3
