"""`update_session` / `create_response` settings: typed, checked before anything is sent, sent as given."""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import ValidationError

from aural.protocols.models import (
    AudioTranscription,
    FunctionCallOutputItem,
    ItemReference,
    PcmFormat,
    ResponseParams,
    ServerVad,
    SessionConfig,
    StreamFormat,
    ToolChoiceFunction,
)
from aural.sdk import Tools, connect, tool
from aural.sdk.params import ResponseSettings, SessionSettings
from tests.sdk.scripts import full_response

if TYPE_CHECKING:
    from tests.sdk.conftest import FakeServer


@tool
def lookup(code: str) -> str:
    """Looks a code up."""
    return code


async def test_session_settings_are_sent_as_the_protocols_objects(server: FakeServer) -> None:
    async with connect(server.url) as conn:
        await conn.update_session(
            instructions="Be brief.",
            tools=Tools([lookup]),
            tool_choice=ToolChoiceFunction(name="lookup"),
            temperature=0.7,
            input_format=PcmFormat(rate=16000),
            turn_detection=ServerVad(silence_duration_ms=300),
            transcription=AudioTranscription(language="en"),
        )
        await conn.update_session(input_format=StreamFormat(type="audio/ogg"))
    await server.finished()
    first, second = (event["session"] for event in server.of_type("session.update"))
    assert first == {
        "type": "realtime",
        "instructions": "Be brief.",
        "tools": [lookup.definition.model_dump(exclude_none=True)],
        "tool_choice": {"type": "function", "name": "lookup"},
        "temperature": 0.7,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 16000},
                "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
                "transcription": {"language": "en"},
            }
        },
    }
    assert second == {"type": "realtime", "audio": {"input": {"format": {"type": "audio/ogg"}}}}


async def test_none_is_sent_as_null_to_switch_a_setting_off(server: FakeServer) -> None:
    async with connect(server.url) as conn:
        await conn.update_session(turn_detection=None, transcription=None)
        await conn.update_session(SessionConfig(instructions=None))
    await server.finished()
    off, dropped = (event["session"] for event in server.of_type("session.update"))
    assert off == {"type": "realtime", "audio": {"input": {"turn_detection": None, "transcription": None}}}
    assert dropped == {"type": "realtime", "instructions": None}


async def test_settings_go_on_top_of_the_protocols_model(server: FakeServer) -> None:
    config = SessionConfig.model_validate({"instructions": "A", "audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    server.responders["response.create"] = lambda request: full_response(request, ["ok"])
    async with connect(server.url) as conn:
        await conn.update_session(config, instructions="B", turn_detection=ServerVad())
        await conn.create_response(ResponseParams(instructions="C", max_output_tokens=9), instructions="D").collect()
    await server.finished()
    [update] = server.of_type("session.update")
    assert update["session"] == {
        "type": "realtime",
        "instructions": "B",
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}}},
    }
    assert config.instructions == "A", "the caller's model is left as it was"
    [request] = server.of_type("response.create")
    assert (request["response"]["instructions"], request["response"]["max_output_tokens"]) == ("D", 9)


async def test_response_settings_are_sent_as_the_protocols_objects(server: FakeServer) -> None:
    server.responders["response.create"] = lambda request: full_response(request, ["ok"])
    async with connect(server.url) as conn:
        stream = conn.create_response(
            instructions=None,  # the session's: left out
            tools=[lookup],
            tool_choice="required",
            max_output_tokens="inf",
            conversation="none",
            input=(ItemReference(id="item_1"), FunctionCallOutputItem(call_id="call_1", output="42")),
            metadata={"topic": "codes"},
        )
        assert await stream.collect() == "ok"
    await server.finished()
    [request] = server.of_type("response.create")
    assert request["response"] == {
        "tools": [lookup.definition.model_dump(exclude_none=True)],
        "tool_choice": "required",
        "max_output_tokens": "inf",
        "conversation": "none",
        "input": [
            {"type": "item_reference", "id": "item_1"},
            {"type": "function_call_output", "object": "realtime.item", "call_id": "call_1", "output": "42"},
        ],
        "metadata": {"topic": "codes", "client_event_id": stream.event_id},
    }


@pytest.mark.parametrize(
    ("where", "settings", "error", "message"),
    [
        ("session", {"instrucions": "typo"}, TypeError, "unknown setting.*: instrucions"),
        ("response", {"turn_detection": None}, TypeError, "unknown setting.*: turn_detection"),
        ("both", {"top_p": 0.0}, ValidationError, "top_p"),
        ("both", {"tool_choice": "sometimes"}, ValidationError, "tool_choice"),
        ("both", {"tools": ["lookup"]}, ValidationError, "tools"),
        ("session", {"turn_detection": {"type": "nodding"}}, ValidationError, "turn_detection"),
        ("session", {"input_format": PcmFormat(rate=24000), "top_p": 2.0}, ValidationError, "top_p"),
        ("response", {"input": [{"type": "message"}]}, ValidationError, "input"),
    ],
)
async def test_bad_settings_raise_in_the_caller_and_nothing_is_sent(
    server: FakeServer, where: str, settings: dict[str, Any], error: type[Exception], message: str
) -> None:
    async with connect(server.url) as conn:
        if where != "response":
            with pytest.raises(error, match=message):
                await conn.update_session(**settings)
        if where != "session":
            with pytest.raises(error, match=message):
                conn.create_response(**settings)
    await server.finished()
    assert server.received == []


def test_the_settings_cover_the_protocols_fields() -> None:
    response = set(typing.get_type_hints(ResponseSettings))
    assert response == set(ResponseParams.model_fields)
    session = set(typing.get_type_hints(SessionSettings))
    set_by_the_server = {"type", "id", "object", "model"}
    audio_input = {"input_format", "turn_detection", "transcription"}
    assert session - audio_input | {"audio"} == set(SessionConfig.model_fields) - set_by_the_server
