"""Input codec benchmark: CPU cost of decoding + resampling each input format, per second of audio.

A spoken utterance (examples/sample.wav, repeated to `--seconds`) is encoded in every format Aural
accepts, with PyAV's encoders, then decoded by the runtime's own decoder (`make_decoder`) fed in chunks
of about 20 ms of the stream, as a live client sends them. CPU time (`time.process_time`, which counts
the decoder threads) is measured from the first chunk through `flush()`; medians over `--repeats` runs.

The encoder table here (`STREAMS`, `encode`) also makes the fixtures of the codec tests.

    python bench/codecs.py [--seconds 10] [--repeats 7] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from aural.protocols.models import AudioFormat, PcmaFormat, PcmFormat, PcmuFormat, StreamFormat
from aural.runtime.audio.decoders import make_decoder
from aural.sdk.audio import read_audio_file

SAMPLE_WAV = Path(__file__).resolve().parent.parent / "examples" / "sample.wav"
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


def speech(rate: int, seconds: float | None = None) -> Pcm16:
    """examples/sample.wav as PCM16 mono at `rate`, repeated to `seconds` when given."""
    pcm = np.frombuffer(read_audio_file(SAMPLE_WAV, rate=rate), dtype="<i2")
    if seconds is not None:
        pcm = np.resize(pcm, int(seconds * rate))
    return pcm.astype(np.int16)


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


def source(stream: Stream, seconds: float | None = None) -> Pcm16:
    """The speech a stream is made from, in its rate and channels."""
    pcm = speech(stream.rate, seconds)
    return stereo(pcm) if stream.channels == 2 else pcm


def chunks(data: bytes, seconds: float, chunk_seconds: float = CHUNK_SECONDS) -> list[bytes]:
    """`data` cut into pieces of about `chunk_seconds` of its `seconds` of audio."""
    step = max(1, round(len(data) * chunk_seconds / seconds))
    return [data[i : i + step] for i in range(0, len(data), step)]


def cpu_seconds(stream: Stream, pieces: list[bytes]) -> float:
    """CPU time of one decode of `pieces`, from the first chunk through `flush()`."""
    decoder = make_decoder(stream.format)
    start = time.process_time()
    for piece in pieces:
        decoder.feed(piece)
    decoder.flush()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args()
    results = {}
    for name, stream in STREAMS.items():
        data = encode(source(stream, args.seconds), stream)
        pieces = chunks(data, args.seconds)
        runs = [cpu_seconds(stream, pieces) for _ in range(args.repeats)]
        ms_per_second = 1000 * statistics.median(runs) / args.seconds
        results[name] = {
            "format": stream.format.model_dump(exclude_none=True),
            "source_rate": stream.rate,
            "channels": stream.channels,
            "bytes_per_second": round(len(data) / args.seconds),
            "chunk_bytes": len(pieces[0]),
            "cpu_ms_per_audio_second": round(ms_per_second, 3),
        }
        print(f"{name:24} {ms_per_second:7.2f} ms CPU per second of audio ({len(pieces[0])} B chunks)")
    report = {
        "benchmark": "input audio decode + resample to 16 kHz mono, fed in ~20 ms chunks",
        "seconds": args.seconds,
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "pyav": av.__version__},
        "codecs": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "codecs.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
