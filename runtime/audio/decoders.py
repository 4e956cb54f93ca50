"""The one decoder factory: an `AudioDecoder` for any input format of the protocol."""

from __future__ import annotations

from aural.protocols.models import AudioFormat, StreamFormat

from .base import AudioDecoder
from .container import ContainerDecoder
from .pcm import PcmDecoder
from .wav import WavDecoder


def make_decoder(fmt: AudioFormat) -> AudioDecoder:
    """A fresh decoder for one stream in `fmt` (decoders are never shared between streams)."""
    if not isinstance(fmt, StreamFormat):
        return PcmDecoder(fmt)
    if fmt.type == "audio/wav":
        return WavDecoder()
    return ContainerDecoder(fmt.type)
