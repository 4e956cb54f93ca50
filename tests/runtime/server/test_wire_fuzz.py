"""Hostile messages against the real server (aiohttp on a loopback port, the fake engine), in any order.

Each example opens a connection and sends a few frames (`tests.support.hostile`: events generated from the
protocol's JSON Schema, the same with one hostile change, and frames no event can be). After each frame a
probe (`conversation.item.retrieve` of a missing item, whose `error` names the probe) marks where the
server's answers to that frame end. For every frame: the connection stays open, every server event is a
valid openai event, a frame that must be refused gets exactly one `error`, no client input is answered
with `server_error`, and nothing reaches the log at error level (no traceback). Afterwards, a turn works.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from structlog.testing import capture_logs

from tests.support.client import Event, RawClient, add_text, validate_openai
from tests.support.hostile import Frame, hostile_frames

from .conftest import Connect

RESET = {
    "type": "session.update",
    "session": {
        "tools": [],
        "tool_choice": "auto",
        "output_modalities": ["text"],
        "max_output_tokens": "inf",
        "audio": {"input": {"format": {"type": "audio/pcm"}, "turn_detection": None}},
    },
}
"""What the final turn needs, whatever the frames set before it."""

EXTENSION_RATE = {
    "type": "session.update",
    "session": {"audio": {"input": {"format": {"type": "audio/pcm", "rate": 8000}}}},
}
"""An Aural extension (PCM at 8 kHz) that `session.updated` echoes, though openai's types know only 24 kHz."""


async def answers(client: RawClient, frame: Frame, index: int) -> list[Event]:
    """Send `frame`, then a probe; the events the server sent in between (its answers to the frame)."""
    probe = f"probe_{index}"
    await client.send_frame(frame.data)
    await client.send({"type": "conversation.item.retrieve", "item_id": probe, "event_id": probe})
    received: list[Event] = []
    while True:
        event = await client.recv()
        if event["type"] == "error" and event["error"].get("event_id") == probe:
            return received
        received.append(event)


async def final_turn(client: RawClient) -> Event:
    """A text turn after whatever came before (waiting out a response still running); its `response.done`."""
    await client.send({**RESET, "event_id": "reset"})
    await client.recv_until("session.updated")
    await add_text(client, "Hello?")
    while True:
        await client.send({"type": "response.create", "event_id": "final"})
        event = await client.recv()
        while not (event["type"] == "response.created" or _answers_final(event)):
            event = await client.recv()
        if event["type"] == "response.created":
            return (await client.recv_until("response.done"))[-1]
        assert event["error"]["code"] == "conversation_already_has_active_response"
        await client.recv_until("response.done")


def _answers_final(event: Event) -> bool:
    return bool(event["type"] == "error" and event["error"].get("event_id") == "final")


def assert_answered(frame: Frame, events: list[Event]) -> None:
    errors = [event["error"] for event in events if event["type"] == "error"]
    assert all(error["code"] != "server_error" for error in errors), (frame.kind, errors)
    if frame.refused:
        assert len(errors) == 1, (frame.kind, events)
        assert errors[0]["message"] and errors[0]["code"]


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(frames=st.lists(hostile_frames(), min_size=1, max_size=5))
@example(frames=[Frame(json.dumps(EXTENSION_RATE), refused=False, kind="schema")])  # once found in CI
async def test_hostile_frames_get_errors_and_a_turn_still_works(
    connect: Connect, caplog: pytest.LogCaptureFixture, frames: list[Frame]
) -> None:
    caplog.clear()
    with capture_logs() as logs:
        client = await connect()
        assert client.disconnect is not None
        try:
            for index, frame in enumerate(frames):
                assert_answered(frame, await answers(client, frame, index))
            done = await final_turn(client)
        finally:  # a failing example must not hold its connection: the next ones would wait for one
            await client.disconnect(False)
    assert done["response"]["status"] == "completed"
    failures: list[Any] = [entry for entry in logs if entry["log_level"] in ("error", "exception", "critical")]
    failures += [record.getMessage() for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]
    assert not failures


def _updated(fmt: dict[str, Any]) -> str:
    session = {"type": "realtime", "id": "sess_1", "model": "m", "audio": {"input": {"format": fmt}}}
    return json.dumps({"type": "session.updated", "event_id": "event_1", "session": session})


@pytest.mark.parametrize("fmt", [{"type": "audio/pcm", "rate": 8000}, {"type": "audio/webm"}])
def test_the_wire_check_takes_aurals_format_extensions(fmt: dict[str, Any]) -> None:
    validate_openai(_updated(fmt))


@pytest.mark.parametrize(
    "fmt", [{"type": "audio/pcm", "rate": 4000}, {"type": "audio/x-unknown"}, {"type": "audio/pcm", "rate": "8000"}]
)
def test_the_wire_check_refuses_a_format_neither_ga_nor_aural(fmt: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        validate_openai(_updated(fmt))
