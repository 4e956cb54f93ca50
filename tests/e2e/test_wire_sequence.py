"""The exact frames of manual-commit turns, as a non-Python client reads them off the websocket.

PROTOCOL.md's reference sequence for one text turn, with its ids tied together: the committed user
item, the response, the assistant item and the `previous_item_id` chain across turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

import pytest

from tests.support.client import Event, RawClient, b64, output_text
from tests.support.sequence import ITEM_PHASES

from .conftest import MODEL

pytestmark = pytest.mark.model

REFERENCE_TURN = [
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    *ITEM_PHASES,
    "response.done",
]
MAX_TOKENS = 12
SESSION = {
    "type": "realtime",
    "instructions": "Answer in one short sentence.",
    "output_modalities": ["text"],
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None}},
}


def collapsed_types(events: list[Event]) -> list[str]:
    """Event types, with each run of text deltas counted once."""
    return [event_type for event_type, _ in groupby(event["type"] for event in events)]


@dataclass(frozen=True)
class ReferenceTurn:
    """The events of one turn, named by their place in the reference sequence."""

    committed: Event
    user_added: Event
    user_done: Event
    created: Event
    item_added: Event
    assistant_added: Event
    part_added: Event
    deltas: list[Event]
    text_done: Event
    part_done: Event
    item_done: Event
    assistant_done: Event
    done: Event

    @classmethod
    def of(cls, events: list[Event]) -> ReferenceTurn:
        assert collapsed_types(events) == REFERENCE_TURN
        committed, user_added, user_done, created, item_added, assistant_added, part_added = events[:7]
        text_done, part_done, item_done, assistant_done, done = events[-5:]
        return cls(
            committed,
            user_added,
            user_done,
            created,
            item_added,
            assistant_added,
            part_added,
            events[7:-5],
            text_done,
            part_done,
            item_done,
            assistant_done,
            done,
        )

    @property
    def response_id(self) -> str:
        response_id: str = self.created["response"]["id"]
        return response_id

    @property
    def assistant_id(self) -> str:
        assistant_id: str = self.item_added["item"]["id"]
        return assistant_id


async def manual_turn(client: RawClient, pcm: bytes, number: int) -> ReferenceTurn:
    await client.send({"type": "input_audio_buffer.append", "audio": b64(pcm), "event_id": f"evt_append_{number}"})
    await client.send({"type": "input_audio_buffer.commit", "event_id": f"evt_commit_{number}"})
    create = {"max_output_tokens": MAX_TOKENS, "metadata": {"client_event_id": f"evt_create_{number}"}}
    await client.send({"type": "response.create", "response": create, "event_id": f"evt_create_{number}"})
    return ReferenceTurn.of(await client.recv_until("response.done"))


def check_user_item(turn: ReferenceTurn, previous_item_id: str | None) -> None:
    """The committed audio becomes a user item placed after `previous_item_id`."""
    assert turn.committed.get("previous_item_id") == previous_item_id
    for event in (turn.user_added, turn.user_done):
        assert event["item"]["id"] == turn.committed["item_id"]
        assert event["item"]["role"] == "user"
        assert [part["type"] for part in event["item"]["content"]] == ["input_audio"]
        assert event.get("previous_item_id") == previous_item_id


def check_response_scope(turn: ReferenceTurn, number: int) -> None:
    """Every response event names this response, its one output item and its one content part."""
    assert turn.created["response"]["status"] == "in_progress"
    assert turn.created["response"]["metadata"] == {"client_event_id": f"evt_create_{number}"}
    assert turn.done["response"]["id"] == turn.response_id
    scoped = [turn.item_added, turn.part_added, *turn.deltas, turn.text_done, turn.part_done, turn.item_done]
    assert {event["response_id"] for event in scoped} == {turn.response_id}
    assert {event["output_index"] for event in scoped} == {0}
    in_part = [turn.part_added, *turn.deltas, turn.text_done, turn.part_done]
    assert {event["content_index"] for event in in_part} == {0}
    assert {event["item_id"] for event in in_part} == {turn.assistant_id}


def check_assistant_item(turn: ReferenceTurn) -> None:
    """One assistant item, placed after the user item, opened in progress and closed with the response."""
    user_id = turn.committed["item_id"]
    items = [turn.item_added["item"], turn.assistant_added["item"], turn.item_done["item"], turn.assistant_done["item"]]
    assert {item["id"] for item in items} == {turn.assistant_id} != {user_id}
    assert {item["role"] for item in items} == {"assistant"}
    assert turn.assistant_added["previous_item_id"] == turn.assistant_done["previous_item_id"] == user_id
    assert turn.item_added["item"]["status"] == turn.assistant_added["item"]["status"] == "in_progress"
    [final] = turn.done["response"]["output"]
    assert final["id"] == turn.assistant_id
    assert turn.item_done["item"]["status"] == turn.assistant_done["item"]["status"] == final["status"]


def check_text(turn: ReferenceTurn) -> None:
    """The deltas add up to the text every closing event carries."""
    text = "".join(delta["delta"] for delta in turn.deltas)
    assert text
    assert turn.part_added["part"] == {"type": "text", "text": ""}
    assert turn.text_done["text"] == turn.part_done["part"]["text"] == text
    content = [{"type": "output_text", "text": text}]
    assert turn.item_done["item"]["content"] == turn.assistant_done["item"]["content"] == content
    assert output_text(turn.done["response"]) == text


def check_status(turn: ReferenceTurn) -> None:
    """`incomplete` exactly when the reply hit max_output_tokens; usage counts the audio."""
    response = turn.done["response"]
    usage = response["usage"]
    status = "incomplete" if usage["output_tokens"] == MAX_TOKENS else "completed"
    assert response["status"] == response["status_details"]["type"] == status
    assert usage["output_tokens"] <= MAX_TOKENS
    assert usage["input_token_details"]["audio_tokens"] > 0


async def test_manual_commit_turns_follow_the_reference_sequence(session: RawClient, speech_pcm: bytes) -> None:
    created = session.events[0]["session"]
    assert (created["type"], created["model"]) == ("realtime", MODEL)
    await session.send({"type": "session.update", "session": SESSION, "event_id": "evt_update"})
    updated = (await session.expect("session.updated"))["session"]
    assert updated["instructions"] == SESSION["instructions"]
    assert updated["output_modalities"] == ["text"]
    assert updated["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert updated["audio"]["input"].get("turn_detection") is None

    previous_item_id = None
    for number in (1, 2):
        turn = await manual_turn(session, speech_pcm, number)
        check_user_item(turn, previous_item_id)
        check_response_scope(turn, number)
        check_assistant_item(turn)
        check_text(turn)
        check_status(turn)
        previous_item_id = turn.assistant_id
    first, second = (event["response"] for event in session.events if event["type"] == "response.done")
    assert first["id"] != second["id"]
    assert first["conversation_id"] == second["conversation_id"]
    assert second["usage"]["input_token_details"]["cached_tokens"] > 0
    (limits, *_) = (event["rate_limits"] for event in session.events if event["type"] == "rate_limits.updated")
    assert [(limit["name"], limit["remaining"]) for limit in limits] == [
        ("tokens", limits[0]["limit"] - first["usage"]["total_tokens"])
    ], "after a response, the context's room"
