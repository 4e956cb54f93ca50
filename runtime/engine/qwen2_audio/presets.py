"""Built-in models: Qwen2-Audio's real classes with seeded random weights and a byte-level tokenizer.

No weights can be downloaded in CI, so `tiny` (the default, 0.3M parameters) and `medium` (36M, slow
enough on a CPU for benchmarks to mean something) are built here from transformers' own classes. They
take exactly the code path a real checkpoint takes; only their weights are random. `7b-random` has
Qwen2-Audio-7B's exact geometry (8.4B parameters, about 17 GB in bfloat16): timings depend on the
geometry, not on the weights, so it measures the real size on a GPU with nothing downloaded.

Every preset keeps the byte-level tokenizer. `7b-random`'s embedding has 156032 rows, as the real
checkpoint has for its ~151.6k tokens: the engine never samples the ids past the tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import (
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Tokenizer,
    WhisperFeatureExtractor,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from .settings import PRESETS

SPECIAL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
MAX_CONTEXT = 8192  # Qwen2-Audio-7B's max_position_embeddings


def byte_level_processor() -> Qwen2AudioProcessor:
    """A processor whose tokenizer has one token per byte plus Qwen2-Audio's special tokens (262)."""
    symbols = bytes_to_unicode()
    vocab = {symbols[b]: b for b in range(256)}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None)  # <|endoftext|> becomes 256
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.eos_token = "<|im_end|>"
    feature_extractor = WhisperFeatureExtractor(feature_size=128)
    return Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_preset(
    name: str, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> tuple[Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor]:
    """Build the named preset, its weights drawn from its seed, directly on `device` in `dtype`.

    Building in place matters for `7b-random`: built in float32 on the CPU it would take 33 GB and
    minutes. On the CPU the weights are those of a float32 build cast to `dtype` (an accelerator draws
    them from its own generator); the global random states are left as they were.

    Raises:
        KeyError: `name` is not a preset.
    """
    size = PRESETS[name]
    device = torch.device(device)
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
            "vocab_size": size.vocab_size or len(tokenizer),
            "hidden_size": size.text_hidden,
            "intermediate_size": size.text_intermediate or 4 * size.text_hidden,
            "num_hidden_layers": size.text_layers,
            "num_attention_heads": size.text_heads,
            "num_key_value_heads": size.text_heads,
            "max_position_embeddings": MAX_CONTEXT,
            "rms_norm_eps": size.rms_norm_eps,
            "eos_token_id": tokenizer.convert_tokens_to_ids("<|im_end|>"),
            "pad_token_id": tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            "bos_token_id": None,
        },
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    generators = [] if device.type in ("cpu", "meta") else [device]  # the CPU's is always kept
    with torch.random.fork_rng(generators, device_type=device.type if generators else "cpu"), device:
        torch.manual_seed(size.seed)
        with _default_dtype(dtype):
            model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    return model.eval(), processor
