"""The one decoder factory: an `AudioDecoder` for any input format of the protocol."""

from __future__ import annotations

from aural.protocols.models import AudioFormat, StreamFormat

from .base import MAX_SAMPLES, AudioDecoder
from .container import ContainerDecoder
from .pcm import PcmDecoder
from .wav import WavDecoder


def make_decoder(fmt: AudioFormat, max_samples: int = MAX_SAMPLES) -> AudioDecoder:
    """A fresh decoder for one stream in `fmt` (decoders are never shared between streams).

    `max_samples` bounds what a compressed stream may decode to between two calls (see `ContainerDecoder`);
    PCM and WAV decode to at most a few samples per byte, so the message size bounds them already.
    """
    if not isinstance(fmt, StreamFormat):
        return PcmDecoder(fmt)
    if fmt.type == "audio/wav":
        return WavDecoder()
    return ContainerDecoder(fmt.type, max_samples)
