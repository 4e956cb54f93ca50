"""A checkpoint folder loads through the same path a downloaded Qwen2-Audio takes, and answers alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aural.runtime.engine.base import AudioPart, GenerationDone, Message, SamplingParams, TextDelta
from aural.runtime.engine.presets import build_preset
from aural.runtime.engine.qwen2_audio import TransformersEngine


async def _reply(engine: TransformersEngine) -> tuple[list[int], str]:
    session = await engine.open_session()
    audio = (0.2 * np.sin(np.arange(16000) / 9)).astype(np.float32)
    conversation = [Message("user", (AudioPart("u/0", audio), "What is it?"), "u")]
    text = ""
    async for event in session.generate(conversation, "r", SamplingParams(max_tokens=10)):
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
    preset = TransformersEngine.load("tiny", device="cpu", dtype="float32")
    folder = TransformersEngine.load(str(tmp_path), device="cpu", dtype="float32")
    try:
        assert folder.model_name == str(tmp_path)
        expected = await _reply(preset)
        assert expected[0], "the reply has tokens"
        assert await _reply(folder) == expected
    finally:
        preset.worker.shutdown()
        folder.worker.shutdown()
