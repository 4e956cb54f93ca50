"""Function calls in the conversation state machine: checked definitions, call items, results."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from aural.protocols import decode_client_event
from aural.runtime.engine.base import GenerationDone, TokenUsage, ToolCallDelta, ToolCallDone
from aural.runtime.session.commands import CheckSchemas, StartResponse
from aural.runtime.session.inputs import ClientSent
from aural.runtime.session.session import ConversationSession
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import generated, send, types

WEATHER = {
    "type": "function",
    "name": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def session() -> ConversationSession:
    session = ConversationSession("tiny", CAPABILITIES)
    send(session, type="session.update", session={"tools": [WEATHER], "tool_choice": "auto"})
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]}
    send(session, type="conversation.item.create", item=item)
    return session


def _start(session: ConversationSession, **response: Any) -> StartResponse:
    start = send(session, type="response.create", response=response)[-1]
    assert isinstance(start, StartResponse)
    return start


def test_text_then_a_call_stream_as_two_items(session: ConversationSession) -> None:
    start = _start(session)
    assert start.params.tools is not None and start.params.tools.mode == "auto"
    rid = start.response_id
    generated(session, rid, "Checking.")
    opened = generated(session, rid, ToolCallDelta(0, "weather", '{"ci'))
    assert types(opened) == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
    ]
    call = opened[4].item
    assert (call.type, call.name, opened[4].output_index) == ("function_call", "weather", 1)
    assert opened[5].previous_item_id == start.reply_key
    generated(session, rid, ToolCallDelta(0, "weather", 'ty": "Oslo"}'))
    done = generated(session, rid, ToolCallDone(0, "weather", '{"city": "Oslo"}'))
    assert types(done) == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
    ]
    assert done[0].arguments == '{"city": "Oslo"}' and done[0].call_id == call.call_id
    end = generated(session, rid, GenerationDone("stop", TokenUsage(10, 0, 0, 20)))
    assert [o.type for o in end][:1] == ["response.done"]
    assert [item.type for item in end[0].response.output] == ["message", "function_call"]
    (*_, turn) = session.items.messages()
    assert turn.key == start.reply_key and [c.name for c in turn.tool_calls] == ["weather"]

    out = send(session, type="conversation.item.create", item={
        "type": "function_call_output", "call_id": call.call_id, "output": "sunny"})  # fmt: skip
    assert types(out) == ["conversation.item.added", "conversation.item.done"]
    follow = _start(session)
    assert [m.role for m in follow.conversation] == ["user", "assistant", "tool"]
    assert follow.conversation[-1].parts == ("sunny",)


def test_a_call_cut_off_is_deleted_and_reported(session: ConversationSession) -> None:
    rid = _start(session, tool_choice="required").response_id
    opened = generated(session, rid, ToolCallDelta(0, "weather", '{"ci'))
    call_id = opened[0].item.id
    end = generated(session, rid, GenerationDone("length", TokenUsage(10, 0, 0, 5)))
    assert types(end) == ["conversation.item.deleted", "error", "response.done", "rate_limits.updated"]
    assert end[0].item_id == call_id and end[2].response.output == []
    assert end[1].error.code == "tool_call_incomplete" and "max_output_tokens" in end[1].error.message
    assert [m.role for m in session.items.messages()] == ["user"]


@pytest.mark.parametrize(
    ("update", "param"),
    [
        ({"tools": [{**WEATHER, "parameters": {"type": "object", "properties": {"a": {"type": "strin"}}}}]},
         "session.tools.0.parameters"),
        ({"tools": [WEATHER, WEATHER]}, "session.tools.1.name"),
        ({"tools": [{**WEATHER, "name": "bad name"}]}, "session.tools.0.name"),
    ],
)  # fmt: skip
def test_invalid_tool_definitions_are_refused_and_change_nothing(
    session: ConversationSession, update: dict[str, Any], param: str
) -> None:
    (error,) = send(session, type="session.update", event_id="u", session=update)
    assert (error.error.code, error.error.param, error.error.event_id) == ("invalid_value", param, "u")
    assert [t.name for t in session.config.tools or []] == ["weather"] and session.config.tool_choice == "auto"


def test_a_call_cut_before_its_name_leaves_no_item_and_is_reported(session: ConversationSession) -> None:
    rid = _start(session, tool_choice={"type": "function", "name": "weather"}).response_id
    end = generated(session, rid, GenerationDone("length", TokenUsage(10, 0, 0, 5), unnamed_call=True))
    assert types(end) == ["error", "response.done", "rate_limits.updated"], "no item was announced, nor added"
    assert end[1].response.output == [] and end[1].response.status == "incomplete"
    assert end[0].error.code == "tool_call_incomplete" and "before its name was complete" in end[0].error.message
    assert [m.role for m in session.items.messages()] == ["user"]


def test_a_named_choice_is_checked_when_a_response_uses_it(session: ConversationSession) -> None:
    """Pipecat and LiveKit send tool_choice and tools in separate updates, in either order."""
    other = {**WEATHER, "name": "other"}
    named = {"type": "function", "name": "other"}
    assert types(send(session, type="session.update", session={"tool_choice": named})) == ["session.updated"]
    (refused,) = send(session, type="response.create", event_id="r")
    assert (refused.error.param, refused.error.event_id) == ("session.tool_choice.name", "r")
    assert session.response is None
    assert types(send(session, type="session.update", session={"tools": [WEATHER, other]})) == ["session.updated"]
    start = _start(session)
    assert start.params.tools is not None and start.params.tools.function == "other"
    required = send(session, type="session.update", session={"tools": [], "tool_choice": "required"})
    assert types(required) == ["session.updated"]


def test_an_output_for_an_unknown_call_is_refused(session: ConversationSession) -> None:
    item = {"type": "function_call_output", "call_id": "call_nope", "output": "x"}
    (error,) = send(session, type="conversation.item.create", item=item)
    assert error.error.param == "item.call_id" and len(session.items) == 1
    (error,) = send(session, type="response.create", response={"tool_choice": {"type": "function", "name": "x"}})
    assert error.error.param == "response.tool_choice.name" and session.response is None


def test_schemas_are_checked_off_the_loop_once_each() -> None:
    judged: list[dict[str, Any]] = []

    def enforceable(schema: Any) -> str | None:
        judged.append(dict(schema))
        return "it is too clever" if "clever" in schema.get("properties", {}) else None

    session = ConversationSession("tiny", replace(CAPABILITIES, check_schema=enforceable))
    first = session.receive(
        ClientSent(decode_client_event(json.dumps({"type": "session.update", "session": {"tools": [WEATHER]}})))
    )
    assert first.events == () and [type(command) for command in first.commands] == [CheckSchemas]
    assert judged == [], "the session asks; the ingest stage judges"
    assert types(send(session, type="session.update", session={"tools": [WEATHER], "instructions": "hi"})) == [
        "session.updated"
    ]
    assert judged == [WEATHER["parameters"]], "judged once, then known"
    clever = {**WEATHER, "name": "clever", "parameters": {"type": "object", "properties": {"clever": {}}}}
    (refused,) = send(session, type="response.create", event_id="r", response={"tools": [clever]})
    assert refused.error.code == "invalid_value" and refused.error.param == "response.tools.0.parameters"
    assert "cannot be enforced while decoding: it is too clever" in refused.error.message
