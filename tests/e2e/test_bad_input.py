"""Bad input: each is answered by an `error` event, and the conversation goes on as if it never came."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from aural.runtime.engine.qwen2_audio.chat_format import audio_token_count
from tests.support.client import (
    Event,
    RawClient,
    add_text,
    assert_consistent,
    assert_error,
    assert_turn_works,
    b64,
    cancel,
    commit_audio,
    create_response,
    read_response,
)

from .conftest import RUNAWAY_PROMPT, RUNAWAY_TOKENS, pcm_ms, start_runaway

pytestmark = pytest.mark.model


def frame(**fields: Any) -> str:
    return json.dumps(fields)


@dataclass(frozen=True)
class Bad:
    """A frame the server must refuse, and the error it must answer with."""

    frame: str | bytes
    code: str
    param: str | None = None
    event_id: str | None = None


UNKNOWN_ITEM = {"item_id": "item_missing", "event_id": "evt_bad"}
BAD_INPUT = {
    "malformed JSON": Bad('{"type": "response.create",', "invalid_json"),
    "JSON array": Bad('[{"type": "response.create"}]', "invalid_request_error"),
    "binary frame": Bad(frame(type="response.create").encode(), "invalid_request_error"),
    "no type": Bad(frame(event_id="evt_bad"), "invalid_request_error", "type", "evt_bad"),
    "unknown type": Bad(frame(type="response.frobnicate", event_id="evt_bad"), "unknown_event_type", "type", "evt_bad"),
    "missing field": Bad(
        frame(type="input_audio_buffer.append", event_id="evt_bad"), "invalid_request_error", "audio", "evt_bad"
    ),
    "mistyped field": Bad(
        frame(type="conversation.item.delete", item_id=42, event_id="evt_bad"),
        "invalid_request_error",
        "item_id",
        "evt_bad",
    ),
    "mistyped nested field": Bad(
        frame(type="session.update", session={"type": "realtime", "output_modalities": "text"}, event_id="evt_bad"),
        "invalid_request_error",
        "session.output_modalities",
        "evt_bad",
    ),
    "out-of-range value": Bad(
        frame(type="response.create", response={"max_output_tokens": 0}, event_id="evt_bad"),
        "invalid_value",
        "response.max_output_tokens",
        "evt_bad",
    ),
    "bad base64": Bad(
        frame(type="input_audio_buffer.append", audio="not base64!", event_id="evt_bad"),
        "invalid_audio",
        "audio",
        "evt_bad",
    ),
    "commit of an empty buffer": Bad(
        frame(type="input_audio_buffer.commit", event_id="evt_bad"), "input_audio_buffer_commit_empty", None, "evt_bad"
    ),
    "cancel with no response": Bad(
        frame(type="response.cancel", event_id="evt_bad"), "response_cancel_not_active", None, "evt_bad"
    ),
    "delete of an unknown item": Bad(
        frame(type="conversation.item.delete", **UNKNOWN_ITEM), "item_not_found", "item_id", "evt_bad"
    ),
    "retrieve of an unknown item": Bad(
        frame(type="conversation.item.retrieve", **UNKNOWN_ITEM), "item_not_found", "item_id", "evt_bad"
    ),
}


UNION_PATHS = [
    pytest.param(
        Bad(
            frame(
                type="conversation.item.create",
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": 5}]},
                event_id="evt_bad",
            ),
            "invalid_request_error",
            "item.content.0.text",
            "evt_bad",
        ),
        id="mistyped field in an item",
    ),
    pytest.param(
        Bad(
            frame(type="response.create", response={"max_output_tokens": "many"}, event_id="evt_bad"),
            "invalid_request_error",
            "response.max_output_tokens",
            "evt_bad",
        ),
        id="mistyped union field",
    ),
]


@pytest.mark.parametrize("bad", [*(pytest.param(bad, id=name) for name, bad in BAD_INPUT.items()), *UNION_PATHS])
async def test_bad_input_gets_an_error_and_the_session_goes_on(session: RawClient, bad: Bad) -> None:
    await session.send_frame(bad.frame)
    assert_error(await session.expect("error"), bad.code, param=bad.param, event_id=bad.event_id)
    await assert_turn_works(session)


async def test_a_too_short_commit_keeps_the_audio_in_the_buffer(session: RawClient, speech_pcm: bytes) -> None:
    await session.send({"type": "input_audio_buffer.append", "audio": b64(pcm_ms(speech_pcm, 0, 80))})
    await session.send({"type": "input_audio_buffer.commit", "event_id": "evt_short"})
    assert_error(await session.expect("error"), "input_audio_buffer_commit_empty", event_id="evt_short")

    await session.send({"type": "input_audio_buffer.append", "audio": b64(pcm_ms(speech_pcm, 80, 580))})
    await session.send({"type": "input_audio_buffer.commit"})
    await session.expect("input_audio_buffer.committed")
    await create_response(session)
    turn = await read_response(session)
    assert_consistent(turn)
    audio_tokens = turn.response["usage"]["input_token_details"]["audio_tokens"]
    assert audio_tokens == audio_token_count(580 * 16) != audio_token_count(500 * 16), "all 580 ms were committed"


async def next_error(client: RawClient, running: str) -> Event:
    """The next `error` event; whatever comes before it must belong to the running response."""
    *before, error = await client.recv_until("error")
    assert {event.get("response_id") for event in before} <= {running}
    return error


async def test_a_second_create_while_a_response_runs_is_refused(session: RawClient) -> None:
    await add_text(session, RUNAWAY_PROMPT)
    await create_response(session, RUNAWAY_TOKENS)
    await create_response(session, event_id="evt_second")  # right away, not waiting for the first
    running = (await session.recv_until("response.created"))[-1]["response"]["id"]
    assert_error(await next_error(session, running), "conversation_already_has_active_response", event_id="evt_second")

    turn = await cancel(session, running)
    assert turn.response["status"] == "cancelled", "the first response ran on"
    assert [event["type"] for event in session.events].count("response.created") == 1
    await assert_turn_works(session)


@pytest.mark.parametrize("named", [True, False], ids=["by-id", "current"])
async def test_cancel_of_a_running_response(session: RawClient, named: bool) -> None:
    running = await start_runaway(session)
    await session.send({"type": "response.cancel", "response_id": "resp_other", "event_id": "evt_wrong"})
    assert_error(
        await next_error(session, running), "response_cancel_not_active", param="response_id", event_id="evt_wrong"
    )

    turn = await cancel(session, running, named=named)
    assert turn.response["status"] == "cancelled"
    assert turn.response["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert_consistent(turn)
    assert turn.response["output"][0]["status"] == "incomplete"
    await assert_turn_works(session)


async def test_a_rejected_session_update_changes_nothing(session: RawClient, speech_pcm: bytes) -> None:
    update = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}, "max_output_tokens": 0}
    await session.send({"type": "session.update", "session": update, "event_id": "evt_rejected"})
    error = await session.expect("error")
    assert_error(error, "invalid_value", param="session.max_output_tokens", event_id="evt_rejected")

    await commit_audio(session, pcm_ms(speech_pcm, 0, 1000))  # PCM16 at 24 kHz, the format still in force
    await session.expect("input_audio_buffer.committed")
    await create_response(session)
    turn = await read_response(session)
    assert turn.response["usage"]["input_token_details"]["audio_tokens"] == audio_token_count(16000), "1 s of audio"
