"""Loading: a checkpoint folder, a preset built in place on its device and dtype, Qwen2-Audio-7B's geometry."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from aural.runtime.engine.base import AudioPart, GenerationDone, Message, SamplingParams, TextDelta
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.engine.qwen2_audio.presets import PRESETS, build_preset
from tests.support.engines import loaded

pytestmark = pytest.mark.model


async def _reply(engine: TransformersEngine, params: SamplingParams | None = None) -> tuple[list[int], str]:
    session = await engine.open_session()
    audio = (0.2 * np.sin(np.arange(16000) / 9)).astype(np.float32)
    conversation = [Message("user", (AudioPart("u/0", audio), "What is it?"), "u")]
    text = ""
    async for event in session.generate(conversation, "r", params or SamplingParams(max_tokens=10)):
        if isinstance(event, TextDelta):
            text += event.text
        else:
            assert isinstance(event, GenerationDone) and event.reason in ("stop", "length")
    ids = list(session.generated["r"])
    await session.close()
    return ids, text


async def test_a_saved_checkpoint_folder_serves_the_same_model(tmp_path: Path) -> None:
    model, processor = build_preset("tiny")
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    with loaded("tiny") as preset, loaded(str(tmp_path)) as folder:
        assert folder.model_name == str(tmp_path)
        expected = await _reply(preset)
        assert expected[0], "the reply has tokens"
        assert await _reply(folder) == expected


def test_a_preset_is_built_in_place_with_the_weights_of_its_float32_build() -> None:
    reference, _ = build_preset("tiny")
    rng_state, default_dtype = torch.random.get_rng_state(), torch.get_default_dtype()
    model, _ = build_preset("tiny", device="cpu", dtype=torch.bfloat16)
    assert torch.equal(torch.random.get_rng_state(), rng_state), "the global random state is left as it was"
    assert torch.get_default_dtype() == default_dtype
    weights = dict(model.named_parameters())
    for name, expected in reference.named_parameters():
        assert weights[name].dtype == torch.bfloat16, name
        assert torch.equal(weights[name], expected.to(torch.bfloat16)), name


def test_7b_random_has_qwen2_audio_7b_geometry() -> None:
    # On the meta device: the geometry without allocating 17 GB of weights.
    with loaded("7b-random", device="meta", dtype="bfloat16") as engine:
        audio, text = engine.model.config.audio_config, engine.model.config.text_config
        assert (audio.d_model, audio.encoder_layers, audio.encoder_attention_heads) == (1280, 32, 20)
        assert (audio.encoder_ffn_dim, audio.num_mel_bins, audio.max_source_positions) == (5120, 128, 1500)
        assert (text.vocab_size, text.hidden_size, text.intermediate_size) == (156032, 4096, 11008)
        assert (text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (32, 32, 32)
        assert (text.max_position_embeddings, text.rope_parameters["rope_theta"], text.rms_norm_eps) == (
            8192,
            10000,
            1e-5,
        )
        assert sum(p.numel() for p in engine.model.parameters()) == 8_397_094_912  # "8.4B" as published
        assert {p.dtype for p in engine.model.parameters()} == {torch.bfloat16}
        # The ids past the tokenizer (tested on data below) and the three audio markers.
        assert engine.suppressed.shape == (156032 - len(engine.tokenizer) + 3,)


@pytest.mark.parametrize("params", [SamplingParams(max_tokens=12), SamplingParams(12, temperature=1.0, seed=3)])
async def test_ids_past_the_tokenizer_are_never_sampled(
    monkeypatch: pytest.MonkeyPatch, params: SamplingParams
) -> None:
    # A tiny model whose embedding has more rows than the tokenizer has tokens, like Qwen2-Audio-7B's.
    monkeypatch.setitem(PRESETS, "tiny-wide", dataclasses.replace(PRESETS["tiny"], vocab_size=1024))
    with loaded("tiny-wide") as engine:
        vocab = len(engine.tokenizer)
        assert engine.model.get_output_embeddings().out_features == 1024 > vocab

        def favour_undecodable(module: torch.nn.Module, inputs: object, logits: torch.Tensor) -> torch.Tensor:
            return logits + torch.cat([torch.zeros(vocab), torch.full((1024 - vocab,), 1e4)])  # unmasked, they win

        engine.model.lm_head.register_forward_hook(favour_undecodable)
        ids, text = await _reply(engine, params)
    assert ids, "the reply has tokens"
    assert max(ids) < vocab
    assert text == engine.tokenizer.decode(ids)
