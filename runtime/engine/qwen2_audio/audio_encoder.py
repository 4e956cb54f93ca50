"""Qwen2-Audio's audio tower run on an utterance's real frames only.

The stock path pads every clip to 30 s (3000 mel frames) and masks the padding, which saves no
compute. Here the feature extractor sees only the clip plus a short run of zeros, the convolutions see
the real frames plus the two padding frames their kernels reach, and the transformer layers, pooler
and projector see only the real positions. The output equals the padded and masked one (the
fidelity tests compare generated tokens against transformers' own `generate()`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from transformers import Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor

from ..base import SAMPLE_RATE, AudioSamples
from .chat_format import HOP, audio_token_count

_CONV_MARGIN = 3  # mel frames past the end that the two convolutions reach


class AudioEncoder:
    """Turns one clip (≤ 30 s, 16 kHz mono float32) into the embeddings of its `<|AUDIO|>` tokens."""

    def __init__(self, model: Qwen2AudioForConditionalGeneration, extractor: WhisperFeatureExtractor) -> None:
        self._tower = model.model.audio_tower
        self._projector = model.model.multi_modal_projector
        self._extractor = extractor
        self._max_frames = self._tower.config.max_source_positions * 2

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

    @torch.inference_mode()
    def encode(self, samples: AudioSamples) -> torch.Tensor:
        """Embeddings of shape (audio_token_count(len(samples)), text hidden size)."""
        tower = self._tower
        mel, frames = self.features(samples)
        mel = mel.to(device=tower.conv1.weight.device, dtype=tower.conv1.weight.dtype)
        hidden = nn.functional.gelu(tower.conv1(mel))
        hidden = nn.functional.gelu(tower.conv2(hidden))
        positions = (frames - 1) // 2 + 1
        hidden = hidden[:, :, :positions].permute(0, 2, 1) + tower.embed_positions.weight[:positions]
        for layer in tower.layers:
            hidden = layer(hidden, attention_mask=None)
        hidden = tower.avg_pooler(hidden.permute(0, 2, 1)).permute(0, 2, 1)
        hidden = tower.layer_norm(hidden)
        embeddings: torch.Tensor = self._projector(hidden)[0]
        return embeddings[: audio_token_count(len(samples))]
