"""Function calling over the wire: a named choice makes the tiny model call, every event of the call
validates against openai's and Pipecat's types, and the answer after the result reuses the cache."""

from __future__ import annotations

import json

import jsonschema
import pytest

from aural.protocols.sequences import TOOL_CALL, server_types
from tests.support.client import RawClient, add_text, assert_error, collapsed_types, read_response

from .conftest import CALL_CAP

pytestmark = pytest.mark.model

PARAMS = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 6},
        "days": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 7}, "maxItems": 2},
        "unit": {"enum": ["c", "f"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
TOOL = {"type": "function", "name": "weather", "description": "The forecast.", "parameters": PARAMS}


async def test_a_named_call_then_its_result(session: RawClient) -> None:
    await session.send({"type": "session.update", "session": {"tools": [TOOL], "temperature": 1.0}})
    await session.expect("session.updated")
    await add_text(session, "Weather in Oslo?")
    choice = {"type": "function", "name": "weather"}
    await session.send({"type": "response.create", "response": {"tool_choice": choice, "parallel_tool_calls": False}})
    turn = await read_response(session)
    start = len(session.events) - len(turn.events)
    done = turn.one("response.function_call_arguments.done")
    assert done["name"] == "weather"
    assert "".join(e["delta"] for e in turn.of_type("response.function_call_arguments.delta")) == done["arguments"]
    jsonschema.validate(json.loads(done["arguments"]), PARAMS)
    [item] = turn.response["output"]
    assert item["type"] == "function_call" and item["call_id"] == done["call_id"]
    assert item["arguments"] == done["arguments"] and turn.response["status"] == "completed"

    await session.send({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": "call_unknown", "output": "?"}, "event_id": "bad"})  # fmt: skip
    assert_error(await session.recv(), "invalid_value", param="item.call_id", event_id="bad")
    output = {"type": "function_call_output", "call_id": done["call_id"], "output": '{"temp": 21}'}
    await session.send({"type": "conversation.item.create", "item": output})
    await session.send({"type": "response.create", "response": {"max_output_tokens": 8, "tool_choice": "none"}})
    answer = await read_response(session)
    after_the_error = [event for event in session.events[start:] if event["type"] != "error"]
    assert collapsed_types(after_the_error) == server_types(TOOL_CALL)
    usage = answer.response["usage"]
    new = usage["input_tokens"] - usage["input_token_details"]["cached_tokens"]
    assert 0 < new < 80, "only the result's turn (byte-level tokens) and the generation prompt are prefilled"


async def test_bad_tools_get_an_error_and_the_session_goes_on(session: RawClient) -> None:
    bad = {**TOOL, "parameters": {"type": "object", "properties": {"x": {"type": 5}}}}
    await session.send({"type": "session.update", "event_id": "s1", "session": {"tools": [bad]}})
    assert_error(await session.recv(), "invalid_value", param="session.tools.0.parameters", event_id="s1")
    await session.send({"type": "session.update", "session": {"tools": [TOOL, TOOL]}})
    assert_error(await session.recv(), "invalid_value", param="session.tools.1.name")


LONG = {
    "type": "function",
    "name": "write",
    "description": "Writes a long text.",
    "parameters": {
        "type": "object",
        "properties": {"text": {"type": "string", "minLength": 2 * CALL_CAP}},
        "required": ["text"],
        "additionalProperties": False,
    },
}
"""A function whose every call needs more tokens than `CALL_CAP` (a byte-level token per character at most)."""


async def test_a_call_past_the_per_call_limit_fails_naming_that_limit(session: RawClient, call_cap: int) -> None:
    """Not `incomplete` at `max_output_tokens` (which is "inf" here): `failed`, and the error names the limit."""
    await session.send({"type": "session.update", "session": {"tools": [LONG]}})
    await session.expect("session.updated")
    await add_text(session, "Write it.")
    await session.send({"type": "response.create", "response": {"tool_choice": {"type": "function", "name": "write"}}})
    turn = await read_response(session)
    kinds = [event["type"] for event in turn.events]
    assert kinds[-3:] == ["conversation.item.deleted", "error", "response.done"]
    [added] = turn.of_type("response.output_item.added")
    assert turn.one("conversation.item.deleted")["item_id"] == added["item"]["id"]
    error = turn.one("error")["error"]
    assert error["code"] == "tool_call_incomplete" and error["type"] == "invalid_request_error"
    assert (
        f"The call of 'write' was cut off at the server's limit of {call_cap} tokens per function call"
        in (error["message"])
    )
    assert "raise max_output_tokens" not in error["message"]
    response = turn.response
    assert response["status"] == "failed" and response["output"] == []
    assert response["status_details"]["error"] == error
    assert response["usage"]["output_tokens"] == call_cap, "every token of the call was decoded under the grammar"

    await session.send({"type": "response.create", "response": {"tool_choice": "none", "max_output_tokens": 4}})
    after = await read_response(session)
    assert after.response["status"] in ("completed", "incomplete") and not after.of_type("error")


async def test_a_forced_call_cut_before_its_name_leaves_no_item(session: RawClient) -> None:
    await session.send({"type": "session.update", "session": {"tools": [TOOL]}})
    await session.expect("session.updated")
    await add_text(session, "Weather in Oslo?")
    choice = {"type": "function", "name": "weather"}
    await session.send({"type": "response.create", "response": {"tool_choice": choice, "max_output_tokens": 1}})
    turn = await read_response(session)
    assert [event["type"] for event in turn.events] == ["response.created", "error", "response.done"]
    assert turn.response["status"] == "incomplete" and turn.response["output"] == []
    error = turn.one("error")
    assert_error(error, "tool_call_incomplete")
    assert "before its name was complete" in error["error"]["message"]
    await session.send({"type": "response.create", "response": {"tool_choice": choice, "max_output_tokens": 400}})
    assert (await read_response(session)).one("response.function_call_arguments.done")["name"] == "weather"
