"""Compressed and container input streams: decoded as their chunks arrive, true to the source, and
refused with a clear `invalid_audio` error when they are not what was declared.

Fixtures are espeak-ng speech encoded with PyAV's encoders (the table in tests/support/codecs.py), made once per
test session.
"""

from __future__ import annotations

import functools
import gc
import struct
import threading
import time

import numpy as np
import pytest

from aural.protocols.errors import ErrorCode
from aural.protocols.models import StreamFormat
from aural.runtime.audio.base import AudioDecoder
from aural.runtime.audio.container import NO_AUDIO_BYTES, ContainerDecoder
from aural.runtime.audio.decoders import make_decoder
from aural.runtime.audio.pcm import PcmDecoder, PcmSpec
from aural.runtime.audio.wav import WavDecoder
from aural.runtime.engine.base import SAMPLE_RATE, AudioSamples
from aural.runtime.errors import AudioError
from aural.runtime.session.wire_errors import wire_error
from tests.support.codecs import STREAMS, Pcm16, Stream, chunks, encode, stereo
from tests.support.speech import speak

TEXT = "Hello, how are you?"
CONTAINED = [name for name, stream in STREAMS.items() if stream.muxer is not None]
LOSSY_SNR_DB = 10.0  # measured here: Opus 29 dB, MP3 23 dB, AAC 13-16 dB
MAX_LAG = SAMPLE_RATE // 20  # encoder delay allowed before the lossy output lines up (AAC primes 1024 samples)
POLLS = 2000  # a bound on waiting for the decoder thread, never a timing assertion
TYPES = sorted({stream.format.type for stream in STREAMS.values() if isinstance(stream.format, StreamFormat)})


@functools.cache
def source(rate: int, channels: int) -> Pcm16:
    pcm = (np.clip(speak(TEXT, rate=rate), -1, 1) * 32767).astype(np.int16)
    return stereo(pcm) if channels == 2 else pcm


@functools.cache
def fixture(name: str) -> bytes:
    stream = STREAMS[name]
    return encode(source(stream.rate, stream.channels), stream)


@functools.cache
def reference(rate: int, channels: int) -> AudioSamples:
    """The source as the PCM path decodes it (the same resampler): what a lossless stream must give."""
    decoder = PcmDecoder(PcmSpec("pcm16", rate, channels))
    return np.concatenate([decoder.feed(source(rate, channels).tobytes()), decoder.flush()])


def decode(stream: Stream, data: bytes, step: int | None = None) -> AudioSamples:
    decoder = make_decoder(stream.format)
    step = step or len(data)
    parts = [decoder.feed(data[i : i + step]) for i in range(0, len(data), step)]
    return np.concatenate([*parts, decoder.flush()])


def seconds(stream: Stream) -> float:
    return len(source(stream.rate, stream.channels)) / stream.rate


@functools.cache
def whole(name: str) -> AudioSamples:
    return decode(STREAMS[name], fixture(name))


def bad_audio(declared: str) -> pytest.RaisesExc[AudioError]:
    return pytest.raises(AudioError, match=f"declared as {declared}")


@pytest.mark.parametrize("name", CONTAINED)
@pytest.mark.parametrize("chunk", ["1 byte", "7 bytes", "20 ms"])
def test_chunks_decode_as_the_whole_file(name: str, chunk: str) -> None:
    stream, data = STREAMS[name], fixture(name)
    step = {"1 byte": 1, "7 bytes": 7, "20 ms": len(chunks(data, seconds(stream))[0])}[chunk]
    np.testing.assert_array_equal(decode(stream, data, step), whole(name))


def aligned_snr(ours: AudioSamples, truth: AudioSamples) -> tuple[int, float]:
    """The encoder delay (in samples, ≤ MAX_LAG) that best lines `ours` up with `truth`, and the SNR there."""
    best = (0, -np.inf)
    for lag in range(MAX_LAG + 1):
        size = min(len(ours) - lag, len(truth))
        noise = np.sum((ours[lag : lag + size] - truth[:size]) ** 2)
        snr = 10 * np.log10(np.sum(truth[:size] ** 2) / max(float(noise), 1e-20))
        best = max(best, (lag, float(snr)), key=lambda found: found[1])
    return best


@pytest.mark.parametrize("name", CONTAINED)
def test_decoded_audio_matches_the_source(name: str) -> None:
    stream, ours = STREAMS[name], whole(name)
    truth = reference(stream.rate, stream.channels)
    if stream.lossless:
        np.testing.assert_array_equal(ours, truth)
        return
    lag, snr = aligned_snr(ours, truth)
    assert snr >= LOSSY_SNR_DB, (lag, snr)
    assert abs(len(ours) - lag - len(truth)) <= MAX_LAG


@pytest.mark.parametrize("name", CONTAINED)
def test_samples_come_back_before_the_stream_ends(name: str) -> None:
    stream, data = STREAMS[name], fixture(name)
    decoder = make_decoder(stream.format)
    early = [decoder.feed(piece) for piece in chunks(data[:-16], seconds(stream))]  # FLAC holds ~1 s back
    for _ in range(POLLS):
        if sum(part.size for part in early):
            break
        time.sleep(0.005)
        early.append(decoder.feed(b""))
    assert sum(part.size for part in early) > 0
    decoder.close()


@pytest.mark.parametrize(("declared", "sent"), [(d, s) for d in TYPES for s in TYPES if d != s])
def test_a_misdeclared_stream_fails_on_its_first_chunk(declared: str, sent: str) -> None:
    data = fixture(next(name for name in CONTAINED if STREAMS[name].format.type == sent))
    decoder = make_decoder(StreamFormat.model_validate({"type": declared}))
    with bad_audio(declared) as caught:
        decoder.feed(data[:64])
    error = wire_error(caught.value)
    assert error.code == ErrorCode.BAD_AUDIO and error.param == "audio"
    decoder.close()


def test_raw_pcm_declared_as_a_stream_fails_at_once() -> None:
    pcm = source(16000, 1).tobytes()
    for declared in TYPES:
        with bad_audio(declared):
            make_decoder(StreamFormat.model_validate({"type": declared})).feed(pcm[:640])


@pytest.mark.parametrize("name", CONTAINED)
def test_a_stream_cut_inside_its_header_fails_at_the_end(name: str) -> None:
    decoder = make_decoder(STREAMS[name].format)
    decoder.feed(fixture(name)[:10])
    with bad_audio(STREAMS[name].format.type):
        decoder.flush()


@pytest.mark.parametrize("declared", sorted(set(TYPES) - {"audio/wav"}))
def test_a_stream_without_audio_fails_instead_of_buffering(declared: str) -> None:
    """The right magic, then nothing decodable: refused once `NO_AUDIO_BYTES` have gone through."""
    head = fixture(next(name for name in CONTAINED if STREAMS[name].format.type == declared))[:8]
    decoder = make_decoder(StreamFormat.model_validate({"type": declared}))
    with bad_audio(declared):
        decoder.feed(head)
        for _ in range(2 * NO_AUDIO_BYTES // 65536):
            decoder.feed(bytes(65536))
        decoder.flush()


@pytest.mark.parametrize("name", CONTAINED)
@pytest.mark.parametrize("seed", [0, 1])
def test_a_damaged_stream_decodes_or_fails_clearly(name: str, seed: int) -> None:
    """Garbage in the middle: FFmpeg resyncs (Ogg, WebM, FLAC, WAV) or reports it (MP3, AAC, MP4); never
    any other exception, a hang, or more audio than the stream holds."""
    stream, data = STREAMS[name], bytearray(fixture(name))
    rng = np.random.default_rng(seed)
    start = int(rng.integers(len(data) // 4, len(data) // 2))
    data[start : start + 300] = rng.integers(0, 256, 300, dtype=np.uint8).tobytes()
    try:
        ours = decode(stream, bytes(data), 997)
    except AudioError as exc:
        assert stream.format.type in exc.message
    else:
        assert 0 < len(ours) <= len(whole(name)) + MAX_LAG


def test_a_plain_m4a_is_refused_when_its_media_data_starts() -> None:
    stream = Stream(StreamFormat(type="audio/mp4"), "aac", 44100, muxer="mp4")
    data = encode(source(44100, 1), stream)
    decoder = make_decoder(stream.format)
    with bad_audio("audio/mp4") as caught:
        for offset in range(0, len(data), 100):
            decoder.feed(data[offset : offset + 100])
    assert offset < len(data) // 2
    assert "faststart" in caught.value.message


def decoder_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("decode audio/")]


def test_close_stops_the_thread_and_is_idempotent() -> None:
    before = decoder_threads()  # a thread of an earlier test may still be on its way out: not compared
    decoder: AudioDecoder = make_decoder(STREAMS["webm-opus"].format)
    decoder.feed(fixture("webm-opus")[:2000])
    [thread] = [thread for thread in decoder_threads() if thread not in before]
    decoder.close()
    decoder.close()
    assert not thread.is_alive()


def test_a_dropped_decoder_does_not_leave_its_thread_waiting() -> None:
    before = decoder_threads()
    decoder = ContainerDecoder("audio/ogg")
    decoder.feed(fixture("ogg-opus")[:2000])
    [thread] = [thread for thread in decoder_threads() if thread not in before]
    del decoder
    gc.collect()
    thread.join(timeout=30)
    assert not thread.is_alive()


# --- WAV -------------------------------------------------------------------------------------------


def wav(fmt: bytes, samples: bytes, *, data_size: int | None = None, before: bytes = b"", after: bytes = b"") -> bytes:
    size = len(samples) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + before
    body += b"data" + struct.pack("<I", size) + samples + after
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm16_fmt(rate: int, channels: int = 1, bits: int = 16, tag: int = 1) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def test_wav_streamed_with_unknown_size_and_extra_chunks_decodes_its_samples() -> None:
    pcm = source(16000, 1).tobytes()
    truth = reference(16000, 1)
    listed = b"LIST" + struct.pack("<I", 5) + b"INFOx" + b"\0"  # odd size: padded to a word
    streamed = wav(pcm16_fmt(16000), pcm, data_size=0xFFFFFFFF, before=listed)
    np.testing.assert_array_equal(decode(STREAMS["wav-16k"], streamed, 7), truth)
    trailing = wav(pcm16_fmt(16000), pcm, after=b"id3 " + struct.pack("<I", 4) + b"junk")
    np.testing.assert_array_equal(decode(STREAMS["wav-16k"], trailing, 1000), truth)


@pytest.mark.parametrize(
    ("fmt", "problem"),
    [
        (pcm16_fmt(16000, bits=24), "24 bits"),
        (pcm16_fmt(16000, channels=6), "6 channels"),
        (pcm16_fmt(4000), "4000 Hz"),
        (b"\x01\x00", "damaged"),
    ],
)
def test_wav_with_samples_aural_does_not_read_is_refused(fmt: bytes, problem: str) -> None:
    with pytest.raises(AudioError, match=problem):
        WavDecoder().feed(wav(fmt, bytes(3000)))


def test_truncated_wav_is_refused() -> None:
    data = wav(pcm16_fmt(16000), source(16000, 1).tobytes())
    decoder = WavDecoder()
    decoder.feed(data[: len(data) // 2])
    with pytest.raises(AudioError, match="truncated"):
        decoder.flush()
