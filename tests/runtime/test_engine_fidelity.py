"""The persistent session against transformers' own `generate()` over the whole history.

Float32 on the CPU, greedy: the runtime's tokens must equal the reference, turn by turn, for a
conversation that mixes voice chat (audio only), audio analysis (audio + text) and text-only turns.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aural.runtime.engine.base import AudioPart, GenerationDone, Message, SamplingParams, TextDelta
from aural.runtime.engine.qwen2_audio import TransformersEngine

MARK = "\x01REPLY{}\x01"


def _audio(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _reference(engine: TransformersEngine, processor, history: list[dict], replies: list[list[int]], audios, n: int):
    """Reference ids: the standard chat template and processor, then `generate()` from scratch.

    Assistant turns are rendered as placeholders and replaced by the ids the model produced, since
    decoded text does not round-trip through the byte-level tokenizer.
    """
    text = processor.apply_chat_template(history, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=text, audio=audios or None, sampling_rate=16000, return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    for k, reply in enumerate(replies):
        mark = processor.tokenizer.encode(MARK.format(k), add_special_tokens=False)
        at = next(i for i in range(len(ids)) if ids[i : i + len(mark)] == mark)
        ids[at : at + len(mark)] = reply
    kwargs = {}
    if audios:
        kwargs = {
            "input_features": inputs["input_features"],
            "feature_attention_mask": inputs["feature_attention_mask"],
        }
    out = engine.model.generate(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        max_new_tokens=n,
        do_sample=False,
        suppress_tokens=list(engine.chat_format.suppressed_ids),
        eos_token_id=sorted(engine.stop_ids),
        **kwargs,
    )
    generated = out[0, len(ids) :].tolist()
    while generated and generated[-1] in engine.stop_ids:
        generated.pop()
    return generated


@pytest.fixture(scope="module")
def engine():
    engine = TransformersEngine.load("tiny", device="cpu", dtype="float32")
    yield engine
    engine.worker.shutdown()


async def _run(session, conversation, key, n):
    deltas, done = [], None
    async for event in session.generate(conversation, key, SamplingParams(max_tokens=n)):
        if isinstance(event, TextDelta):
            deltas.append(event)
        else:
            done = event
    assert isinstance(done, GenerationDone)
    return deltas, done


@pytest.mark.parametrize("instructions", [None, "Answer briefly."])
async def test_five_turns_match_generate_over_whole_history(engine, instructions):
    from aural.runtime.engine.presets import byte_level_processor

    processor = byte_level_processor()
    session = await engine.open_session()
    turns = [
        ("audio", _audio(1, 1.3), None),
        ("audio+text", _audio(2, 0.7), "What is this sound?"),
        ("text", None, "Tell me more, please: é, 你好."),
        ("audio", _audio(3, 2.1), None),
        ("audio+text", _audio(4, 1.0), "Transcribe it."),
    ]
    conversation: list[Message] = []
    history: list[dict] = []
    if instructions:
        conversation.append(Message("system", (instructions,), key="sys"))
        history.append({"role": "system", "content": instructions})
    replies: list[list[int]] = []
    audios: list[np.ndarray] = []
    for k, (_, audio, text) in enumerate(turns):
        parts: list = []
        content: list[dict] = []
        if audio is not None:
            parts.append(AudioPart(f"user{k}/0", audio))
            content.append({"type": "audio", "audio_url": f"clip{k}"})
            audios.append(audio)
        if text is not None:
            parts.append(text)
            content.append({"type": "text", "text": text})
        conversation.append(Message("user", tuple(parts), key=f"user{k}"))
        history.append({"role": "user", "content": content})

        deltas, done = await _run(session, conversation, f"reply{k}", 12)
        ours = session.generated[f"reply{k}"]
        expected = _reference(engine, processor, history, replies, audios, 12)
        assert ours == expected, f"turn {k}"
        assert [t for d in deltas for t in d.token_ids] == ours
        assert done.usage.output_tokens == len(ours)
        if k > 0:
            assert done.usage.cached_tokens > 0, "a later turn must reuse the resident cache"

        conversation.append(Message("assistant", ("(text)",), key=f"reply{k}"))
        history.append({"role": "assistant", "content": MARK.format(k)})
        replies.append(ours)
    await session.close()
