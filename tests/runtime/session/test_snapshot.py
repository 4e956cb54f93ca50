"""A conversation's durable state, to bytes and back: the restored session holds the same items, audio, turns and
configuration, and answers the next events as the original does."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from aural.runtime.engine.base import AudioPart, GenerationDone, Message, ToolCallDelta, ToolCallDone
from aural.runtime.session.commands import StartResponse
from aural.runtime.session.items import StoredItem
from aural.runtime.session.session import ConversationSession
from aural.runtime.session.snapshot import Snapshot
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import generated, of, send

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def pcm16(seconds: float, pitch: float = 300.0) -> str:
    """A tone as the session's default input format holds it: base64 of 24 kHz pcm16."""
    t = np.arange(int(seconds * 24000)) / 24000
    return base64.b64encode((np.sin(2 * np.pi * pitch * t) * 8000).astype("<i2").tobytes()).decode()


def respond(session: ConversationSession, *events: str | ToolCallDelta | ToolCallDone) -> StartResponse:
    """A response of the session that the engine answers with `events`, to its end."""
    (start,) = of(send(session, type="response.create"), StartResponse)
    for event in events:
        generated(session, start.response_id, event)
    generated(session, start.response_id, GenerationDone("stop"))
    return start


def conversation_of_every_kind() -> ConversationSession:
    """Items with audio (committed, and several parts in one item), a turn of text and a function call, the call's
    output, a truncated assistant reply and a truncated audio part, after a `session.update`."""
    session = ConversationSession("tiny", CAPABILITIES)
    send(
        session,
        type="session.update",
        session={
            "instructions": "Answer briefly.",
            "tools": [WEATHER],
            "temperature": 0.7,
            "max_output_tokens": 256,
            "truncation": {"type": "retention_ratio", "retention_ratio": 0.5},
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
        },
    )
    send(session, type="input_audio_buffer.append", audio=pcm16(0.5))
    (committed,) = [e for e in send(session, type="input_audio_buffer.commit") if e.type == "conversation.item.done"]
    content = [
        {"type": "input_audio", "audio": pcm16(0.3, 440)},
        {"type": "input_text", "text": "and this"},
        {"type": "input_audio", "audio": pcm16(0.2, 550)},
    ]
    send(session, type="conversation.item.create", item={"type": "message", "role": "user", "content": content})
    arguments = '{"city": "Oslo"}'
    respond(session, "Let me check.", ToolCallDelta(0, "weather", arguments), ToolCallDone(0, "weather", arguments))
    call = next(s.item for s in session.items if s.item.type == "function_call")
    output = {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'}
    send(session, type="conversation.item.create", item=output)
    reply = respond(session, "It is clear in Oslo today.")
    send(
        session,
        type="conversation.item.truncate",
        item_id=reply.reply_key,
        content_index=0,
        audio_end_ms=0,
        text_end=11,
    )
    send(session, type="conversation.item.truncate", item_id=committed.item.id, content_index=0, audio_end_ms=300)
    return session


def items_of(items: Any) -> list[tuple[Any, ...]]:
    """Items as comparable values: the wire item, the turn and the audio's samples."""
    return [
        (stored.item.model_dump(), stored.turn, {i: samples.tolist() for i, samples in stored.audio.items()})
        for stored in items
    ]


def rendered(messages: list[Message]) -> list[tuple[Any, ...]]:
    """Messages as comparable values (an audio part by its key and samples)."""
    return [
        (
            message.role,
            message.key,
            [(p.key, p.samples.tolist()) if isinstance(p, AudioPart) else p for p in message.parts],
            message.tool_calls,
        )
        for message in messages
    ]


@pytest.fixture
def original() -> ConversationSession:
    return conversation_of_every_kind()


def test_a_snapshot_to_bytes_and_back_restores_the_conversation(original: ConversationSession) -> None:
    snapshot = Snapshot.from_bytes(Snapshot.of(original, "key_1", last_event_id="evt_9").to_bytes())
    restored = ConversationSession("another", CAPABILITIES, restored=snapshot)

    assert (snapshot.owner, snapshot.last_event_id) == ("key_1", "evt_9")
    assert (restored.id, restored.conversation_id) == (original.id, original.conversation_id)
    assert restored.config == original.config and restored.config.model == "tiny"
    assert items_of(restored.items) == items_of(original.items)
    kinds = [(s.item.type, getattr(s.item, "role", None), len(s.audio)) for s in restored.items]
    assert kinds == [
        ("message", "user", 1),
        ("message", "user", 2),
        ("message", "assistant", 0),
        ("function_call", None, 0),
        ("function_call_output", None, 0),
        ("message", "assistant", 0),
    ]
    assert restored.items.messages()[2].tool_calls, "the reply's text and call are one turn, as the engine made them"
    assert next(iter(restored.items)).audio[0].size == 4800, "the audio as truncated (300 ms)"
    assert rendered(restored.items.messages()) == rendered(original.items.messages())


def test_the_restored_session_answers_the_next_events_as_the_original(original: ConversationSession) -> None:
    restored = ConversationSession(
        "tiny", CAPABILITIES, restored=Snapshot.from_bytes(Snapshot.of(original, None).to_bytes())
    )
    ids = [stored.id for stored in original.items]
    for item_id in ids:
        (theirs,), (ours,) = (send(s, type="conversation.item.retrieve", item_id=item_id) for s in (original, restored))
        assert ours.item == theirs.item
    (theirs,), (ours,) = (of(send(s, type="response.create"), StartResponse) for s in (original, restored))
    assert rendered(ours.conversation) == rendered(theirs.conversation)
    assert ours.params == theirs.params and ours.params.temperature == 0.7 and ours.params.tools
    updated = [
        send(s, type="session.update", session={"instructions": "Now verbose."})[0] for s in (original, restored)
    ]
    assert updated[0].session == updated[1].session


def test_a_response_in_flight_is_left_out_until_it_ends(original: ConversationSession) -> None:
    (start,) = of(send(original, type="response.create"), StartResponse)
    generated(original, start.response_id, "Half a rep")
    assert start.reply_key in [s.id for s in original.items]
    assert start.reply_key not in [s.id for s in Snapshot.of(original, None).items]
    generated(original, start.response_id, GenerationDone("stop"))
    (last,) = Snapshot.of(original, None).items[-1:]
    assert last.id == start.reply_key and last.item.status == "completed"


def test_bytes_of_another_format_are_refused(original: ConversationSession) -> None:
    data = Snapshot.of(original, None).to_bytes().replace(b'"format":1', b'"format":99', 1)
    with pytest.raises(ValueError, match="format 99"):
        Snapshot.from_bytes(data)


def test_the_restored_items_are_the_sessions_own(original: ConversationSession) -> None:
    """Two sessions restored from one snapshot share nothing that changes in place."""
    snapshot = Snapshot.of(original, None)
    first, second = (ConversationSession("tiny", CAPABILITIES, restored=snapshot) for _ in range(2))
    stored: StoredItem = next(iter(first.items))
    first.items.set_transcript(stored.id, 0, "hello")
    assert next(iter(second.items)).item != stored.item
