"""Compressed and containerised input streams, demuxed and decoded by PyAV on a thread per stream.

FFmpeg's demuxers pull their input, so each stream gets a thread that runs `av.open()` over a `_Pipe`
fed by `feed()`; the thread decodes, resamples to 16 kHz mono and hands the samples back, which later
`feed()` calls or `flush()` return. Fed chunk by chunk (1 byte, 7 bytes, 20 ms or the whole file) the
output is identical to a whole-file decode, given what AUDIO_NOTES.md measured: `read(n)` never returns
more than n bytes, waits for at least 64 (short reads broke fragmented MP4 and lost MP3's first frame),
and the demuxer is named rather than probed.

FFmpeg rarely notices a stream that is not what was declared, so the first bytes must match the format's
magic, and a stream that gives no audio after `NO_AUDIO_BYTES` fails instead of buffering forever.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import av
import numpy as np
import structlog

from ..engine.base import SAMPLE_RATE, AudioSamples
from ..errors import AudioError
from .base import EMPTY, MAX_SAMPLES, bad_audio
from .resample import MonoResampler

log = structlog.get_logger(__name__)

MIN_READ = 64
"""A read waits for this many bytes (or the end of the stream) before it returns."""
NO_AUDIO_BYTES = 1 << 20
"""A stream that has given no audio after this many bytes is refused."""
MAX_PENDING_BYTES = 16 << 20
"""Input waiting for the decoder thread beyond this is refused (more than one largest append)."""
_OPTIONS = {"probesize": "32", "analyzeduration": "0"}  # the format is named: no probing, no added latency

Magic = Callable[[bytes], bool | None]
"""Looks at a stream's first bytes: True if it starts as the format does, False if not, None: too few."""


def _starts_with(*prefixes: bytes, at: int = 0) -> Magic:
    def check(head: bytes) -> bool | None:
        seen = head[at:]
        if any(p.startswith(seen[: len(p)]) for p in prefixes):
            return True if any(seen.startswith(p) for p in prefixes) else None
        return False

    return check


def _frame_sync(adts: bool) -> Magic:
    """MPEG audio frame sync: 11 set bits, then ADTS has layer bits 00 where MP3 has layer III (01)."""

    def check(head: bytes) -> bool | None:
        if head[:1] and head[0] != 0xFF:
            return False
        if len(head) < 2:
            return None
        return head[1] & 0xF6 == 0xF0 if adts else head[1] & 0xE6 == 0xE2

    return check


def _mp3(head: bytes) -> bool | None:
    tagged = _starts_with(b"ID3")(head)
    return tagged if tagged is not False else _frame_sync(adts=False)(head)


@dataclass(frozen=True)
class Container:
    """How to demux one declared stream type."""

    demuxer: str
    magic: Magic
    expect: str
    """What its first bytes are, for the error message."""


CONTAINERS = {
    "audio/webm": Container("matroska", _starts_with(b"\x1a\x45\xdf\xa3"), "the EBML header 1A 45 DF A3"),
    "audio/ogg": Container("ogg", _starts_with(b"OggS"), "'OggS'"),
    "audio/mp4": Container("mp4", _starts_with(b"ftyp", at=4), "an 'ftyp' box"),
    "audio/aac": Container("aac", _frame_sync(adts=True), "an ADTS frame header (FF F1 or FF F9)"),
    "audio/mpeg": Container("mp3", _mp3, "an ID3 tag or an MPEG layer III frame header"),
    "audio/flac": Container("flac", _starts_with(b"fLaC"), "'fLaC'"),
}


class _Pipe:
    """The file object the demuxer reads: bytes from `write()`, handed out by a blocking `read()`."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._ready = threading.Condition()
        self._ended = False
        self.aborted = False
        self.starved = False
        """Set when the stream gave no audio after `NO_AUDIO_BYTES`: reading stopped there."""
        self.consumed = 0
        self.has_audio = False

    @property
    def pending(self) -> int:
        return len(self._data)

    def write(self, data: bytes) -> None:
        with self._ready:
            self._data += data
            self._ready.notify()  # a read may wait for fewer than MIN_READ bytes

    def end(self, *, abort: bool = False) -> None:
        """No more input: reads drain what is left (or, aborting, return nothing more)."""
        with self._ready:
            self._ended = True
            self.aborted = self.aborted or abort
            self._ready.notify()

    def read(self, size: int) -> bytes:
        """At most `size` bytes, at least `MIN_READ` unless the stream has ended; b"" is its end. Ending
        by an empty read rather than raising keeps exceptions out of FFmpeg's callbacks."""
        with self._ready:
            while len(self._data) < min(size, MIN_READ) and not self._ended:
                self._ready.wait()
            if self.aborted or (not self.has_audio and self.consumed >= NO_AUDIO_BYTES):
                self.starved = not self.aborted
                return b""
            chunk = bytes(self._data[:size])
            del self._data[:size]
            self.consumed += len(chunk)
            return chunk


class _BoxOrder:
    """Walks an MP4 stream's top-level boxes: `moov` or `moof` must come before `mdat`, or nothing can be
    decoded before the whole file is in (a plain M4A: refused as soon as its media data starts)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skip = 0
        self.done = False

    def feed(self, data: bytes) -> None:
        """Raises `AudioError` when the media data comes before the index."""
        if self.done:
            return
        self._buffer += data
        while not self.done:
            taken = min(self._skip, len(self._buffer))
            del self._buffer[:taken]
            self._skip -= taken
            if self._skip or len(self._buffer) < 8:
                return
            size, kind = int.from_bytes(self._buffer[:4], "big"), bytes(self._buffer[4:8])
            if kind in (b"moov", b"moof"):
                self.done = True
            elif kind == b"mdat":
                raise bad_audio(
                    "audio/mp4",
                    "its media data comes before the 'moov' index, so nothing could be decoded before the end of "
                    "the file: send fragmented MP4 or a faststart M4A (ffmpeg -movflags +faststart).",
                )
            elif size == 1 and len(self._buffer) < 16:
                return
            else:
                self._skip = int.from_bytes(self._buffer[8:16], "big") if size == 1 else size
                if self._skip < 8:  # 0 would be a last box running to the end: no index can follow it
                    name = kind.decode("latin-1")
                    raise bad_audio("audio/mp4", f"a box header is damaged ('{name}' of {self._skip} bytes).")


class _TooLong(Exception):
    """The decoded samples not yet taken passed the decoder's bound: decoding stops."""


class _Decoding:
    """The work of one decoder thread: demux and decode the pipe's stream until it ends, keeping the samples
    or the first error. Holds no reference to its `ContainerDecoder`, so that a dropped decoder is freed.

    The samples it holds are bounded by `max_samples`: a few hundred compressed bytes can decode to an hour
    of silence, so the bound is checked as frames are decoded, never after the stream has been decoded whole.
    """

    def __init__(self, label: str, pipe: _Pipe, max_samples: int) -> None:
        self.label = label
        self.pipe = pipe
        self.error: AudioError | None = None
        self._max = max_samples
        self._lock = threading.Lock()
        self._ready: list[AudioSamples] = []
        self._held = 0

    def take(self) -> AudioSamples:
        """The samples decoded since the last call."""
        with self._lock:
            ready, self._ready, self._held = self._ready, [], 0
        return np.concatenate(ready) if ready else EMPTY

    def run(self) -> None:
        resampler = MonoResampler()
        try:
            with av.open(self.pipe, format=CONTAINERS[self.label].demuxer, options=_OPTIONS) as container:
                if not container.streams.audio:
                    self.error = bad_audio(self.label, "the stream holds no audio track.")
                    return
                for frame in container.decode(audio=0):
                    self._keep(resampler.push(frame))
            self._keep(resampler.flush())
        except _TooLong:
            self.pipe.end(abort=True)
            seconds = self._max // SAMPLE_RATE
            self.error = bad_audio(self.label, f"the stream decodes to more than {seconds} s of audio at once.")
        except av.FFmpegError as exc:
            reason = exc.strerror or type(exc).__name__
            self.error = bad_audio(self.label, f"the stream is damaged or is not {self.label} (FFmpeg: {reason}).")
        except Exception:  # a bug of ours or PyAV's must not pass for a clean end of the stream
            log.exception("audio decoder failed", format=self.label)
            self.error = bad_audio(self.label, "the stream could not be decoded.")
        if self.pipe.starved:
            self.error = bad_audio(
                self.label,
                f"no audio in the first {NO_AUDIO_BYTES >> 10} KiB of the stream: it is damaged or not {self.label}.",
            )

    def _keep(self, samples: AudioSamples) -> None:
        if samples.size:
            self.pipe.has_audio = True
            with self._lock:
                if self._held + samples.size > self._max:
                    raise _TooLong
                self._ready.append(samples)
                self._held += samples.size


class ContainerDecoder:
    """Decodes one compressed stream (`audio/webm`, `audio/ogg`, `audio/mp4`, `audio/aac`, `audio/mpeg`,
    `audio/flac`) to 16 kHz mono float32 on its own thread, started once the stream's first bytes match.

    Args:
        label: the declared format, a key of `CONTAINERS`.
        max_samples: the most decoded samples it holds between two calls; a stream that decodes to more
            (a compression bomb, or input far ahead of its takers) fails with `AudioError` as soon as it does.
    """

    def __init__(self, label: str, max_samples: int = MAX_SAMPLES) -> None:
        self.label = label
        self._container = CONTAINERS[label]
        self._head = b""
        self._boxes = _BoxOrder() if label == "audio/mp4" else None
        self._pipe = _Pipe()
        self._decoding = _Decoding(label, self._pipe, max_samples)
        self._thread: threading.Thread | None = None
        weakref.finalize(self, self._pipe.end, abort=True)  # a dropped decoder never leaves its thread waiting

    def feed(self, data: bytes) -> AudioSamples:
        """Pass a chunk to the decoder thread; returns the samples it has decoded since the last call.

        Raises:
            AudioError: the stream does not start as the format does, is damaged, gives no audio, or is
                sent faster than it decodes by more than `MAX_PENDING_BYTES`.
        """
        self._raise_error()
        if self._thread is None:
            self._head += data
            verdict = self._container.magic(self._head)
            if verdict is False:
                expected = self._container.expect
                raise bad_audio(self.label, f"the stream does not start with {expected} (a different format?).")
            if verdict is None:
                return EMPTY
            data, self._head = self._head, b""
            self._thread = threading.Thread(target=self._decoding.run, name=f"decode {self.label}", daemon=True)
            self._thread.start()
        if self._boxes is not None:
            self._boxes.feed(data)
        if self._pipe.pending > MAX_PENDING_BYTES:
            raise bad_audio(self.label, f"more than {MAX_PENDING_BYTES >> 20} MiB wait to be decoded: send slower.")
        self._pipe.write(data)
        return self._decoding.take()

    def flush(self) -> AudioSamples:
        """End of the stream: waits for the thread to decode the rest; returns every sample not yet returned.

        Raises:
            AudioError: as `feed`, and for a stream that ends inside its header or before any audio.
        """
        if self._thread is None:
            if self._head:
                raise bad_audio(self.label, f"the stream ended after {len(self._head)} bytes, inside its header.")
            return EMPTY
        self._pipe.end()
        self._thread.join()
        self._raise_error()
        if not self._pipe.has_audio:
            raise bad_audio(self.label, f"the stream ended after {self._pipe.consumed} bytes without any audio.")
        return self._decoding.take()

    def close(self) -> None:
        """Abandon the stream: the thread stops at its next read; its output is dropped."""
        self._pipe.end(abort=True)
        if self._thread is not None:
            self._thread.join()

    def _raise_error(self) -> None:
        if self._decoding.error is not None:
            raise self._decoding.error
