"""WAV streams: the RIFF header parsed as it arrives, then the samples decoded as raw PCM.

FFmpeg's WAV demuxer waits for 64 KB (up to 2 s of audio) before its first output; reading the header
here and handing the data to `PcmDecoder` gives samples from the first chunk.
"""

from __future__ import annotations

import struct

from ..engine.base import AudioSamples
from .base import EMPTY, bad_audio
from .pcm import Encoding, PcmDecoder, PcmSpec

LABEL = "audio/wav"
MAX_HEADER_BYTES = 1 << 20
"""The chunks before the samples (`fmt `, `LIST`, ...) may take this much; more is refused."""
_EXTENSIBLE = 0xFFFE
_ENCODINGS: dict[tuple[int, int], Encoding] = {(1, 16): "pcm16", (3, 32): "float32", (7, 8): "pcmu", (6, 8): "pcma"}
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # what writers put in the data size when they stream


class WavDecoder:
    """Decodes one RIFF WAVE stream of 16-bit PCM, 32-bit float or G.711, mono or stereo, at any rate."""

    def __init__(self) -> None:
        self._head = bytearray()
        self._samples: PcmDecoder | None = None
        self._remaining: int | None = None
        """Data bytes the header announces and that are still to come; None: up to the end of the stream."""

    def feed(self, data: bytes) -> AudioSamples:
        """Decode a chunk; returns the samples available so far (none while the header is incomplete).

        Raises:
            AudioError: the stream is not RIFF WAVE, or holds samples of a kind Aural does not read.
        """
        if self._samples is None:
            self._head += data
            data = self._parse_header()
            if self._samples is None:
                return EMPTY
        if self._remaining is not None:
            data = data[: self._remaining]
            self._remaining -= len(data)
        return self._samples.feed(data)

    def flush(self) -> AudioSamples:
        """End of the stream: the last samples.

        Raises:
            AudioError: the stream ended inside its header or before the data size it announced.
        """
        if self._samples is None:
            if self._head:
                raise bad_audio(LABEL, f"the stream ended after {len(self._head)} bytes, inside its header.")
            return EMPTY
        if self._remaining:
            raise bad_audio(LABEL, f"the stream is truncated: {self._remaining} bytes of its samples are missing.")
        return self._samples.flush()

    def close(self) -> None:
        """Nothing to free: WAV decoding holds no thread."""

    def _parse_header(self) -> bytes:
        """Read the header as far as it has come; returns the sample bytes after it, once it is complete."""
        head = self._head
        for offset, magic in ((0, b"RIFF"), (8, b"WAVE")):
            seen = bytes(head[offset : offset + 4])
            if not magic.startswith(seen):
                raise bad_audio(LABEL, "the stream does not start with a RIFF WAVE header (a different format?).")
        spec, position = None, 12
        while position + 8 <= len(head):
            kind, size = bytes(head[position : position + 4]), struct.unpack_from("<I", head, position + 4)[0]
            body = position + 8
            if kind == b"data":
                if spec is None:
                    raise bad_audio(LABEL, "its sample data comes before the 'fmt ' chunk that describes it.")
                self._samples = PcmDecoder(spec)
                self._remaining = None if size in _UNKNOWN_SIZES else size
                return bytes(head[body:])
            if body + size > len(head):
                break
            if kind == b"fmt ":
                spec = _spec(bytes(head[body : body + size]))
            position = body + size + size % 2  # chunks are word-aligned
        if len(head) > MAX_HEADER_BYTES:
            raise bad_audio(LABEL, f"no sample data in the first {MAX_HEADER_BYTES >> 10} KiB of the stream.")
        return b""


def _spec(fmt: bytes) -> PcmSpec:
    """The sample layout a `fmt ` chunk describes."""
    if len(fmt) < 16:
        raise bad_audio(LABEL, f"its 'fmt ' chunk is damaged ({len(fmt)} bytes).")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack_from("<H", fmt, 24)[0]  # the sub-format GUID starts with the plain format tag
    encoding = _ENCODINGS.get((tag, bits))
    if encoding is None:
        raise bad_audio(
            LABEL, f"its samples are of format {tag} at {bits} bits; Aural reads 16-bit PCM, 32-bit float and G.711."
        )
    if channels not in (1, 2):
        raise bad_audio(LABEL, f"it has {channels} channels; Aural reads mono and stereo.")
    if not 8000 <= rate <= 192000:
        raise bad_audio(LABEL, f"its sample rate is {rate} Hz; Aural reads 8000 to 192000 Hz.")
    return PcmSpec(encoding, rate, channels, label=LABEL)
