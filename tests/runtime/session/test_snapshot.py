"""A conversation's durable state, to bytes and back: the restored session holds the same items, audio, turns and
configuration, and answers the next events as the original does."""

from __future__ import annotations

from typing import Any

import pytest

from aural.runtime.engine.base import AudioPart, GenerationDone, Message
from aural.runtime.session.commands import StartResponse
from aural.runtime.session.items import StoredItem
from aural.runtime.session.session import ConversationSession
from aural.runtime.session.snapshot import Snapshot
from tests.support.conversations import conversation_of_every_kind
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import generated, of, send


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
