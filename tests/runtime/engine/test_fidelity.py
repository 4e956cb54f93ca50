"""The persistent session against transformers' own `generate()` over the whole history.

Float32 on the CPU, greedy: the runtime's tokens must equal the reference, turn by turn, for a
conversation that mixes voice chat (audio only), audio analysis (audio + text) and text-only turns.
"""

from __future__ import annotations

from functools import partial

import pytest

from aural.runtime.engine.base import AudioPart, Message, SamplingParams, TextDelta
from aural.runtime.errors import ContextExceeded
from tests.support.engines import run_reply, tone
from tests.support.reference import reference_generate

pytestmark = pytest.mark.model


@pytest.mark.parametrize("instructions", [None, "Answer briefly."])
async def test_five_turns_match_generate_over_whole_history(engine, instructions):
    session = await engine.open_session()
    turns = [
        ("audio", tone(1, 1.3), None),
        ("audio+text", tone(2, 0.7), "What is this sound?"),
        ("text", None, "Tell me more, please: é, 你好."),
        ("audio", tone(3, 2.1), None),
        ("audio+text", tone(4, 1.0), "Transcribe it."),
    ]
    conversation: list[Message] = []
    if instructions:
        conversation.append(Message("system", (instructions,), key="sys"))
    replies: dict[str, list[int]] = {}
    for k, (_, audio, text) in enumerate(turns):
        parts: list = []
        if audio is not None:
            parts.append(AudioPart(f"user{k}/0", audio))
        if text is not None:
            parts.append(text)
        conversation.append(Message("user", tuple(parts), key=f"user{k}"))

        deltas, done = await run_reply(session, conversation, f"reply{k}", 12)
        ours = session.generated[f"reply{k}"]
        expected = reference_generate(engine, conversation, replies, 12)
        assert ours == expected, f"turn {k}"
        assert [t for d in deltas for t in d.token_ids] == ours
        assert done.usage.output_tokens == len(ours)
        if k > 0:
            assert done.usage.cached_tokens > 0, "a later turn must reuse the resident cache"

        conversation.append(Message("assistant", ("".join(d.text for d in deltas),), key=f"reply{k}"))
        replies[f"reply{k}"] = ours
    await session.close()


async def test_a_full_context_drops_the_oldest_turns(engine, monkeypatch):
    """Past the context, the oldest turns go (the system turn stays) and the reply still equals the
    reference over exactly what was kept."""
    monkeypatch.setattr(engine, "max_context", 400)
    session = await engine.open_session()
    conversation: list[Message] = [Message("system", ("Be brief.",), key="sys")]
    replies: dict[str, list[int]] = {}
    truncated = False
    for k in range(6):
        conversation.append(Message("user", (AudioPart(f"u{k}/0", tone(k, 0.6)), f"Turn {k}: what now?"), f"u{k}"))
        deltas, done = await run_reply(session, conversation, f"r{k}", 8)
        assert done.reason in ("stop", "length")
        assert done.usage.input_tokens <= 400 - 8
        render = partial(engine.chat_format.render, generated=session.generated.get)
        kept = session.render_within(conversation, 8).ids
        if len(kept) < len(render(conversation).ids):
            truncated = True
            start = next(
                i for i in range(2, len(conversation)) if render([conversation[0], *conversation[i:]]).ids == kept
            )
            reference = reference_generate(engine, [conversation[0], *conversation[start:]], replies, 8)
            assert session.generated[f"r{k}"] == reference
        replies[f"r{k}"] = session.generated[f"r{k}"]
        conversation.append(Message("assistant", ("".join(d.text for d in deltas),), key=f"r{k}"))
    assert truncated, "the conversation must have outgrown the context"
    huge = Message("user", ("x" * 500,), key="huge")
    _, done = await run_reply(session, [conversation[0], huge], "too-big", 8)
    assert done.reason == "error" and isinstance(done.error, ContextExceeded)
    await session.close()


async def test_cancel_between_steps_keeps_cache_and_history_true(engine):
    """A reply cancelled mid-way stays in the history as far as it went; the next turn still equals
    the reference over that history."""
    session = await engine.open_session()
    conversation = [Message("user", (AudioPart("u0/0", tone(5, 1.0)), "Talk for a while."), "u0")]
    generation = session.generate(conversation, "r0", SamplingParams(max_tokens=200))
    seen, text = 0, ""
    async for event in generation:
        if isinstance(event, TextDelta):
            seen += len(event.token_ids)
            text += event.text
            if seen >= 3:
                generation.cancel()
        else:
            assert event.reason == "cancelled"
            assert event.usage.output_tokens == len(session.generated["r0"]) < 200
    partial_reply = session.generated["r0"]
    conversation += [Message("assistant", (text,), "r0"), Message("user", ("And now?",), "u1")]
    _, done = await run_reply(session, conversation, "r1", 10)
    assert done.usage.cached_tokens > 0
    assert session.generated["r1"] == reference_generate(engine, conversation, {"r0": partial_reply}, 10)
    await session.close()


async def test_new_instructions_mid_conversation_reprefill_and_stay_true(engine):
    session = await engine.open_session()
    conversation = [Message("system", ("Be brief.",), "sys")]
    replies: dict[str, list[int]] = {}
    for k in range(2):
        conversation.append(Message("user", (AudioPart(f"u{k}/0", tone(k + 7, 0.8)),), f"u{k}"))
        deltas, _ = await run_reply(session, conversation, f"r{k}", 8)
        replies[f"r{k}"] = session.generated[f"r{k}"]
        conversation.append(Message("assistant", ("".join(d.text for d in deltas),), f"r{k}"))
    conversation[0] = Message("system", ("Answer like a pirate.",), "sys")
    conversation.append(Message("user", ("Who are you?",), "u2"))
    _, done = await run_reply(session, conversation, "r2", 8)
    assert done.usage.cached_tokens < 10, "everything after the changed system turn is prefilled again"
    assert session.generated["r2"] == reference_generate(engine, conversation, replies, 8)
    await session.close()


async def test_a_deleted_turn_leaves_the_cache_true_to_the_edited_history(engine):
    session = await engine.open_session()
    conversation: list[Message] = []
    replies: dict[str, list[int]] = {}
    for k in range(3):
        conversation.append(Message("user", (AudioPart(f"u{k}/0", tone(k + 11, 0.7)), f"Part {k}."), f"u{k}"))
        deltas, _ = await run_reply(session, conversation, f"r{k}", 8)
        replies[f"r{k}"] = session.generated[f"r{k}"]
        conversation.append(Message("assistant", ("".join(d.text for d in deltas),), f"r{k}"))
    del conversation[2:4]  # the second exchange: later audio is renumbered, so the cache is cut there
    conversation.append(Message("user", ("Go on.",), "u3"))
    _, done = await run_reply(session, conversation, "r3", 8)
    assert 0 < done.usage.cached_tokens < done.usage.input_tokens
    assert session.generated["r3"] == reference_generate(engine, conversation, replies, 8)
    await session.close()
