"""Input audio: the wire formats decoded to 16 kHz mono float32 as they stream in.

base        the `AudioDecoder` protocol and its error (free of PyAV)
decoders    `make_decoder(fmt)`, the factory of the ingest stage (`aural.runtime.server.ingest`)
pcm         raw samples: PCM16 / float32 at any rate, mono or stereo, G.711
wav         RIFF WAVE: the header parsed here, the samples decoded as raw PCM
container   WebM, Ogg, MP4, ADTS AAC, MP3, FLAC: PyAV on a thread per stream
resample    the streaming resampler to 16 kHz mono
"""

from .base import AudioDecoder

__all__ = ["AudioDecoder"]
