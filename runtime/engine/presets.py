"""Built-in models: Qwen2-Audio's real classes with seeded random weights and a byte-level tokenizer.

No weights can be downloaded in CI, so `tiny` (the default, 0.3M parameters) and `medium` (36M, slow
enough on a CPU for benchmarks to mean something) are built here from transformers' own classes. They
take exactly the code path a real checkpoint takes; only their weights are random.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Tokenizer,
    WhisperFeatureExtractor,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
MAX_CONTEXT = 8192  # Qwen2-Audio-7B's max_position_embeddings


@dataclass(frozen=True)
class PresetSize:
    """Geometry of a built-in model, and the seed of its random weights."""

    audio_d_model: int
    audio_layers: int
    audio_heads: int
    text_hidden: int
    text_layers: int
    text_heads: int
    seed: int


# Seeds whose greedy replies vary and complete UTF-8 characters (medium's seed 0 repeats one byte
# that never does, so the detokenizer would hold its text back and streaming could not be seen).
PRESETS: dict[str, PresetSize] = {
    "tiny": PresetSize(64, 2, 2, 64, 2, 2, seed=0),
    "medium": PresetSize(384, 4, 6, 512, 8, 8, seed=10),
}


def byte_level_processor() -> Qwen2AudioProcessor:
    """A processor whose tokenizer has one token per byte plus Qwen2-Audio's special tokens (262)."""
    symbols = bytes_to_unicode()
    vocab = {symbols[b]: b for b in range(256)}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None)  # <|endoftext|> becomes 256
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.eos_token = "<|im_end|>"
    feature_extractor = WhisperFeatureExtractor(feature_size=128)
    return Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def build_preset(name: str) -> tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]:
    """Build the named preset in float32 on the CPU, its weights drawn from its seed.

    Raises:
        KeyError: `name` is not a preset.
    """
    size = PRESETS[name]
    processor = byte_level_processor()
    tokenizer = processor.tokenizer
    config = Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            "num_mel_bins": 128,
            "d_model": size.audio_d_model,
            "encoder_layers": size.audio_layers,
            "encoder_attention_heads": size.audio_heads,
            "encoder_ffn_dim": 4 * size.audio_d_model,
            "max_source_positions": 1500,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": size.text_hidden,
            "intermediate_size": 4 * size.text_hidden,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.text_heads,
            "num_key_value_heads": size.text_heads,
            "max_position_embeddings": MAX_CONTEXT,
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "bos_token_id": None,
        },
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(size.seed)
    try:
        model = Qwen2AudioForConditionalGeneration(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return model.eval(), processor
