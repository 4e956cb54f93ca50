"""Qwen2-Audio's audio tower run on an utterance's real frames only.

The stock path pads every clip to 30 s (3000 mel frames) and masks the padding, which saves no
compute. Here the feature extractor sees only the clip plus a short run of zeros, the convolutions see
the real frames plus the two padding frames their kernels reach, and the transformer layers, pooler
and projector see only the real positions. The output equals the padded and masked one (the
fidelity tests compare generated tokens against transformers' own `generate()`).

A clip is encoded in parts (`ClipEncoding`: the convolutions, each transformer layer, the pooler and
projector), each priced in the language model's positions of equal arithmetic, so that the device loop
spreads a long clip over steps within the same budget as prefill chunks: a 30 s clip costs ~560 positions
on `medium` (1.1 s of encoder alone on a 2-core CPU, which froze every stream) and ~180 on Qwen2-Audio-7B
(within one step's 256).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor

from ..base import SAMPLE_RATE, AudioSamples
from .chat_format import HOP, audio_token_count

_CONV_MARGIN = 3  # mel frames past the end that the two convolutions reach


class AudioEncoder:
    """Turns one clip (≤ 30 s, 16 kHz mono float32) into the embeddings of its `<|AUDIO|>` tokens.

    Args:
        model: the loaded network (its audio tower and projector run here).
        extractor: its feature extractor.
        position_flops: the language model's arithmetic per prefilled position, the unit of `ClipEncoding.cost`.
    """

    def __init__(
        self, model: Qwen2AudioForConditionalGeneration, extractor: WhisperFeatureExtractor, position_flops: float
    ) -> None:
        self.tower = model.model.audio_tower
        self.projector = model.model.multi_modal_projector
        self._extractor = extractor
        self._max_frames = self.tower.config.max_source_positions * 2
        self.position_flops = position_flops

    def features(self, samples: AudioSamples) -> tuple[torch.Tensor, int]:
        """Log-mel features of the real frames plus the convolution margin, and the real frame count."""
        frames = -(-len(samples) // HOP)
        # The stock extractor zero-pads to exactly 30 s: never pad past that, or the last frames differ.
        length = min((frames + _CONV_MARGIN) * HOP + self._extractor.n_fft, self._extractor.n_samples)
        padded = np.zeros(max(length, len(samples)), dtype=np.float32)
        padded[: len(samples)] = samples
        mel = self._extractor(
            padded, sampling_rate=SAMPLE_RATE, padding="do_not_pad", return_tensors="pt", truncation=False
        ).input_features
        return mel[:, :, : min(frames + _CONV_MARGIN, self._max_frames)], frames

    def start(self, samples: AudioSamples) -> ClipEncoding:
        """The encoding of a clip, nothing computed yet."""
        return ClipEncoding(self, samples)

    def encode(self, samples: AudioSamples) -> torch.Tensor:
        """Embeddings of shape (audio_token_count(len(samples)), text hidden size), all parts at once."""
        encoding = self.start(samples)
        while encoding.result is None:
            encoding.advance()
        return encoding.result


class ClipEncoding:
    """One clip's way through the encoder, a part at a time: the convolutions, each transformer layer, then the
    pooler and projector. `result` is the clip's embeddings once every part ran."""

    def __init__(self, encoder: AudioEncoder, samples: AudioSamples) -> None:
        self._encoder = encoder
        self._samples = samples
        frames = -(-len(samples) // HOP)
        self._positions = (frames - 1) // 2 + 1
        self._frames = frames
        self._hidden: torch.Tensor | None = None
        self._part = 0  # 0: convolutions; 1..layers: that layer; layers + 1: pooler and projector
        self.result: torch.Tensor | None = None

    def cost(self) -> int:
        """The next part's arithmetic, in the language model's prefilled positions (at least 1)."""
        tower, positions = self._encoder.tower, self._positions
        width: int = tower.config.d_model
        layers = len(tower.layers)
        if self._part == 0:
            flops = 6 * width * self._frames * (int(tower.config.num_mel_bins) + width / 2)
        elif self._part <= layers:
            flops = 2 * positions * (4 * width * width + 2 * width * int(tower.config.encoder_ffn_dim))
            flops += 4 * positions * positions * width
        else:
            flops = positions * width * int(self._encoder.projector.linear.out_features)
        return max(1, math.ceil(flops / self._encoder.position_flops))

    @torch.inference_mode()
    def advance(self) -> None:
        """Run the next part."""
        tower = self._encoder.tower
        if self._part == 0:
            mel, _ = self._encoder.features(self._samples)
            mel = mel.to(device=tower.conv1.weight.device, dtype=tower.conv1.weight.dtype)
            hidden = nn.functional.gelu(tower.conv1(mel))
            hidden = nn.functional.gelu(tower.conv2(hidden))
            positions = self._positions
            self._hidden = hidden[:, :, :positions].permute(0, 2, 1) + tower.embed_positions.weight[:positions]
        elif self._part <= len(tower.layers):
            self._hidden = tower.layers[self._part - 1](self._hidden, attention_mask=None)
        else:
            assert self._hidden is not None
            hidden = tower.avg_pooler(self._hidden.permute(0, 2, 1)).permute(0, 2, 1)
            hidden = tower.layer_norm(hidden)
            embeddings: torch.Tensor = self._encoder.projector(hidden)[0]
            self.result = embeddings[: audio_token_count(len(self._samples))]
            self._hidden = None
        self._part += 1
