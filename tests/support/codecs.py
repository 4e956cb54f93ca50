"""Every input format Aural accepts, and how to make a stream of it from PCM16 samples with PyAV's encoders.

The table (`STREAMS`) and `encode` make the fixtures of the codec tests and the streams of `bench.codecs`.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from aural.protocols.models import AudioFormat, PcmaFormat, PcmFormat, PcmuFormat, StreamFormat

CHUNK_SECONDS = 0.02

Pcm16 = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Stream:
    """One input format and how to make it: `muxer` and `codec` for PyAV, or raw samples when `muxer` is
    None (`codec` then names the raw encoding: pcm16, float32, pcmu, pcma)."""

    format: AudioFormat
    codec: str
    rate: int
    channels: int = 1
    muxer: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    lossless: bool = False


STREAMS = {
    "pcm16-24k": Stream(PcmFormat(), "pcm16", 24000),
    "pcm16-16k": Stream(PcmFormat(rate=16000), "pcm16", 16000, lossless=True),
    "pcm16-44k-stereo": Stream(PcmFormat(rate=44100, channels=2), "pcm16", 44100, 2),
    "float32-48k": Stream(PcmFormat(rate=48000, encoding="float32"), "float32", 48000),
    "pcmu": Stream(PcmuFormat(), "pcmu", 8000),
    "pcma": Stream(PcmaFormat(), "pcma", 8000),
    "webm-opus": Stream(StreamFormat(type="audio/webm"), "libopus", 48000, muxer="webm"),
    "ogg-opus": Stream(
        StreamFormat(type="audio/ogg"), "libopus", 48000, muxer="ogg", options={"page_duration": "20000"}
    ),
    "mp4-aac-fragmented": Stream(
        StreamFormat(type="audio/mp4"), "aac", 44100, muxer="mp4", options={"movflags": "frag_keyframe+empty_moov"}
    ),
    "m4a-aac-faststart": Stream(
        StreamFormat(type="audio/mp4"), "aac", 48000, muxer="mp4", options={"movflags": "+faststart"}
    ),
    "adts-aac": Stream(StreamFormat(type="audio/aac"), "aac", 44100, muxer="adts"),
    "mp3": Stream(StreamFormat(type="audio/mpeg"), "libmp3lame", 44100, muxer="mp3"),
    "flac-16k": Stream(StreamFormat(type="audio/flac"), "flac", 16000, muxer="flac", lossless=True),
    "flac-44k-stereo": Stream(StreamFormat(type="audio/flac"), "flac", 44100, 2, muxer="flac", lossless=True),
    "wav-16k": Stream(StreamFormat(type="audio/wav"), "pcm_s16le", 16000, muxer="wav", lossless=True),
    "wav-float32-22k-stereo": Stream(StreamFormat(type="audio/wav"), "pcm_f32le", 22050, 2, muxer="wav", lossless=True),
}


def stereo(pcm: Pcm16) -> Pcm16:
    """Two different channels from one: the signal left, half of it delayed by 1 ms right."""
    right = np.roll(pcm // 2, len(pcm) // 1000 + 1)
    return np.stack([pcm, right], axis=1).astype(np.int16)


def encode(pcm: Pcm16, stream: Stream) -> bytes:
    """`pcm` (samples × channels, or mono) at `stream.rate`, encoded as `stream` says."""
    pcm = pcm.reshape(len(pcm), -1)
    if stream.muxer is None:
        return _raw(pcm, stream.codec)
    with tempfile.TemporaryDirectory() as folder:  # faststart rewrites the file: it needs a real one
        path = os.path.join(folder, "audio")
        with av.open(path, "w", format=stream.muxer, options=stream.options) as output:
            encoder = output.add_stream(stream.codec, rate=stream.rate, layout=_layout(pcm.shape[1]))
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=_layout(pcm.shape[1]))
            frame.sample_rate = stream.rate
            for packet in [*encoder.encode(frame), *encoder.encode(None)]:
                output.mux(packet)
        return Path(path).read_bytes()


def chunks(data: bytes, seconds: float, chunk_seconds: float = CHUNK_SECONDS) -> list[bytes]:
    """`data` cut into pieces of about `chunk_seconds` of its `seconds` of audio."""
    step = max(1, round(len(data) * chunk_seconds / seconds))
    return [data[i : i + step] for i in range(0, len(data), step)]


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


def _raw(pcm: Pcm16, codec: str) -> bytes:
    if codec == "float32":
        return (pcm.astype("<f4") / np.float32(32768.0)).tobytes()
    if codec == "pcm16":
        return pcm.astype("<i2").tobytes()
    context = av.CodecContext.create("pcm_mulaw" if codec == "pcmu" else "pcm_alaw", "w")
    context.sample_rate, context.layout, context.format = 8000, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = 8000
    return b"".join(bytes(packet) for packet in [*context.encode(frame), *context.encode(None)])
