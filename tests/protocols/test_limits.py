"""The bounds of client events, held at decode: each broken one is a `ProtocolError` with its code and field."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from typing import Any

import pytest
from pydantic import BaseModel

from aural.protocols import ErrorCode, ProtocolError, client_events, decode_client_event, encode_event, models
from aural.protocols.codec import CLOSE_REASON_BYTES, close_reason
from aural.protocols.limits import DEFAULT_LIMITS, FIELD_BOUNDS, Limits, field_bound
from aural.protocols.models import ErrorDetail
from aural.protocols.server_events import Error

LIMITS = DEFAULT_LIMITS


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def _tool(parameters: dict[str, Any], name: str = "f") -> dict[str, Any]:
    return {"type": "function", "name": name, "parameters": parameters}


def _update(**session: Any) -> str:
    return json.dumps({"type": "session.update", "event_id": "evt_1", "session": session})


def _create(**response: Any) -> str:
    return json.dumps({"type": "response.create", "event_id": "evt_1", "response": response})


def _item(**item: Any) -> str:
    return json.dumps({"type": "conversation.item.create", "event_id": "evt_1", "item": item})


@dataclass(frozen=True)
class Refused:
    frame: str
    code: str
    param: str | None
    event_id: str | None = "evt_1"


MANY_PROPERTIES = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(10_000)}}
REFUSED = {
    "JSON 1,000 deep": Refused("[" * 1000 + "]" * 1000, "nesting_too_deep", None, None),
    "an event 65 deep": Refused(_update(model=_nested(63)), "nesting_too_deep", None),
    "lone surrogate in type": Refused('{"type": "x\\ud800"}', "invalid_unicode", "type", None),
    "lone surrogate in event_id": Refused(
        '{"type": "response.create", "event_id": "\\udfff"}', "invalid_unicode", "event_id", None
    ),
    "lone surrogate in instructions": Refused(
        '{"type": "session.update", "event_id": "evt_1", "session": {"instructions": "a\\ud83d"}}',
        "invalid_unicode",
        "session.instructions",
    ),
    "lone surrogate in a metadata key": Refused(
        '{"type": "response.create", "event_id": "evt_1", "response": {"metadata": {"\\ud800": "v"}}}',
        "invalid_unicode",
        "response.metadata",
    ),
    "1e400": Refused(_update(temperature=1).replace("1}", "1e400}"), "number_out_of_range", None, None),
    "10**5000": Refused(
        _update(max_output_tokens=1).replace("1}", "1" * 5000 + "}"), "number_out_of_range", None, None
    ),
    "NaN": Refused(_update(temperature=float("nan")), "invalid_json", None, None),
    "temperature 1e-300": Refused(_update(temperature=1e-300), "decimal_below_min_value", "session.temperature"),
    "temperature 2": Refused(_create(temperature=2.0), "decimal_above_max_value", "response.temperature"),
    "no output modality": Refused(_update(output_modalities=[]), "empty_array", "session.output_modalities"),
    "17 metadata pairs": Refused(
        _create(metadata={str(i): "v" for i in range(17)}), "object_above_max_properties", "response.metadata"
    ),
    "a metadata key of 65": Refused(_create(metadata={"k" * 65: "v"}), "string_above_max_length", "response.metadata"),
    "a metadata value of 513": Refused(
        _create(metadata={"k": "v" * 513}), "string_above_max_length", "response.metadata.k"
    ),
    "an item id of 33": Refused(
        _item(type="message", role="user", id="i" * 33, content=[]), "string_above_max_length", "item.id"
    ),
    "a 1 MiB item id": Refused(
        json.dumps({"type": "conversation.item.delete", "event_id": "evt_1", "item_id": "i" * 2**20}),
        "string_above_max_length",
        "item_id",
    ),
    "an event_id of 129": Refused(
        json.dumps({"type": "input_audio_buffer.clear", "event_id": "e" * 129}),
        "string_above_max_length",
        "event_id",
        None,
    ),
    "a long text": Refused(
        _item(type="message", role="user", content=[{"type": "input_text", "text": "x" * 65_537}]),
        "string_above_max_length",
        "item.content.0.text",
    ),
    "long instructions": Refused(_update(instructions="x" * 65_537), "string_above_max_length", "session.instructions"),
    "65 tools": Refused(
        _update(tools=[_tool({"type": "object"}, f"f{i}") for i in range(65)]),
        "array_above_max_length",
        "session.tools",
    ),
    "10,000 properties": Refused(
        _update(tools=[_tool(MANY_PROPERTIES)]), "tool_schema_too_large", "session.tools.0.parameters"
    ),
    "tools of 48 KiB in all": Refused(
        _create(tools=[_tool({"type": "object", "description": "x" * 12_000}, f"f{i}") for i in range(4)]),
        "tool_schema_too_large",
        "response.tools.2.parameters",
    ),
    "a schema 33 deep": Refused(
        _update(tools=[_tool({"type": "object", **_nested(33)})]), "nesting_too_deep", "session.tools.0.parameters"
    ),
    "a long description": Refused(
        _update(tools=[{"type": "function", "name": "f", "description": "d" * 1025}]),
        "string_above_max_length",
        "session.tools.0.description",
    ),
    "a long tool name": Refused(
        _update(tools=[_tool({"type": "object"}, "f" * 65)]), "string_above_max_length", "session.tools.0.name"
    ),
}


@pytest.mark.parametrize("refused", REFUSED.values(), ids=REFUSED.keys())
def test_a_frame_out_of_bounds_is_refused_with_its_code_and_field(refused: Refused) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client_event(refused.frame)
    assert (caught.value.code, caught.value.param, caught.value.event_id) == (
        refused.code,
        refused.param,
        refused.event_id,
    )
    assert len(caught.value.message) < 200, "the message names the bound, not the input"


ACCEPTED = {
    "the bounds themselves": _create(
        temperature=1.2,
        metadata={"k" * 64: "v" * 512, **{str(i): "v" for i in range(15)}},
        instructions="x" * 65_536,
        tools=[_tool({"type": "object", "properties": {"a": _nested(30)}})],
    ),
    "greedy decoding": _update(temperature=0.0, output_modalities=["text"]),
    "a surrogate pair": '{"type": "response.create", "event_id": "\\ud83d\\ude00"}',
    "an escaped backslash before u": '{"type": "response.create", "event_id": "\\\\ud800"}',
    "a 32-character id": _item(type="message", role="user", id="i" * 32, content=[]),
}


@pytest.mark.parametrize("frame", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_frame_at_the_bounds_is_accepted(frame: str) -> None:
    decode_client_event(frame)


def test_limits_are_the_servers_to_choose() -> None:
    frame = _update(instructions="x" * 100)
    with pytest.raises(ProtocolError, match="50 characters"):
        decode_client_event(frame, Limits(max_instructions_chars=50))
    decode_client_event(frame, Limits(max_instructions_chars=100))


def test_an_event_with_a_lone_surrogate_still_encodes() -> None:
    event = Error(error=ErrorDetail(type="server_error", message="bad \ud800 text", event_id="\udfff"))
    encoded = json.loads(encode_event(event))
    assert encoded["error"]["message"] == "bad \ufffd text"
    assert encoded["error"]["event_id"] == "\ufffd"


@pytest.mark.parametrize("reason", ["x" * 500, "é" * 100, "€" * 60, "a" + "😀" * 40, "bad \ud800"])
def test_a_close_reason_fits_a_close_frame_on_a_character_boundary(reason: str) -> None:
    encoded = close_reason(reason)
    assert len(encoded) <= CLOSE_REASON_BYTES
    assert encoded.decode().rstrip("\ufffd") in reason.encode(errors="replace").decode()


# --- the bounds the reference documents per field (`FIELD_BOUNDS`) ---------------------------------------------

_MESSAGE: dict[str, Any] = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}


def _in_item(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "conversation.item.create", "item": item}


def _in_part(part: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return _in_item({**_MESSAGE, "role": role, "content": [part]})


_CARRIERS: dict[str, Any] = {
    "ClientEventBase": lambda field: {"type": "response.cancel", **field},
    "ConversationItemCreate": lambda field: {**_in_item(_MESSAGE), **field},
    "ConversationItemDelete": lambda field: {"type": "conversation.item.delete", "item_id": "i", **field},
    "ConversationItemRetrieve": lambda field: {"type": "conversation.item.retrieve", "item_id": "i", **field},
    "ConversationItemTruncate": lambda field: {
        "type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": 0, **field},
    "ResponseCancel": lambda field: {"type": "response.cancel", **field},
    "SessionConfig": lambda field: {"type": "session.update", "session": field},
    "ResponseParams": lambda field: {"type": "response.create", "response": field},
    "AudioTranscription": lambda field: {"type": "session.update", "session": {"audio": {"input": {
        "transcription": field}}}},
    "FunctionTool": lambda field: {"type": "session.update", "session": {"tools": [
        {"type": "function", "name": "f", **field}]}},
    "ToolChoiceFunction": lambda field: {"type": "session.update", "session": {"tool_choice": {
        "type": "function", "name": "f", **field}}},
    "MessageItem": lambda field: _in_item({**_MESSAGE, **field}),
    "FunctionCallItem": lambda field: _in_item({
        "type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", **field}),
    "FunctionCallOutputItem": lambda field: _in_item({
        "type": "function_call_output", "call_id": "c", "output": "o", **field}),
    "ItemReference": lambda field: {"type": "response.create", "response": {"input": [
        {"type": "item_reference", "id": "i", **field}]}},
    "InputText": lambda field: _in_part({"type": "input_text", "text": "hi", **field}),
    "InputAudio": lambda field: _in_part({"type": "input_audio", "audio": "AAAA", **field}),
    "OutputText": lambda field: _in_part({"type": "output_text", "text": "hi", **field}, role="assistant"),
}  # fmt: skip
"""For each class with a character bound: a valid client event carrying the given fields in one of them."""
CHARACTER_BOUNDS = {
    where: match[1]
    for where, phrase in FIELD_BOUNDS.items()
    if (match := re.fullmatch(r"≤ \{(\w+)(?::,)?\} characters", phrase))
}
"""The fields bound to a number of characters, and the `Limits` attribute that bounds each."""


@pytest.mark.parametrize("where", CHARACTER_BOUNDS, ids=CHARACTER_BOUNDS)
def test_a_documented_character_bound_is_the_one_kept(where: str) -> None:
    owner, field = where.split(".")
    limit = getattr(LIMITS, CHARACTER_BOUNDS[where])
    assert field_bound(where) == f"≤ {limit:,} characters"
    decode_client_event(json.dumps(_CARRIERS[owner]({field: "x" * limit})))
    with pytest.raises(ProtocolError) as caught:
        decode_client_event(json.dumps(_CARRIERS[owner]({field: "x" * (limit + 1)})))
    assert caught.value.code == ErrorCode.STRING_TOO_LONG
    assert caught.value.param is not None and caught.value.param.split(".")[-1] == field


def test_every_documented_bound_names_a_client_field_and_every_event_bound_is_documented() -> None:
    classes = {cls.__name__: cls for module in (client_events, models) for cls in vars(module).values()
               if isinstance(cls, type) and issubclass(cls, BaseModel)}  # fmt: skip
    for where in FIELD_BOUNDS:
        owner, field = where.split(".")
        assert field in classes[owner].model_fields, where
        assert field_bound(where)
    named = set(re.findall(r"\{(\w+)", " ".join(FIELD_BOUNDS.values())))
    per_message = {"max_message_bytes", "events_per_second", "event_burst", "max_json_depth"}
    assert named == {field.name for field in fields(Limits)} - per_message
