"""Every event round-trips through the codec; the committed JSON Schema matches the code."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aural.protocols import (
    CLIENT_EVENTS,
    SERVER_EVENTS,
    ErrorCode,
    ProtocolError,
    decode_client_event,
    decode_server_event,
    encode_event,
)
from aural.protocols.schema import SCHEMA_PATH

ITEM = {"type": "message", "id": "item_1", "role": "user", "content": [{"type": "input_text", "text": "hi é"}]}
RESPONSE = {"id": "resp_1", "status": "completed", "output": [ITEM], "metadata": {"client_event_id": "e1"}}
SESSION = {
    "type": "realtime",
    "instructions": "Be brief.",
    "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad", "threshold": 0.5}}},
    "max_output_tokens": "inf",
}
FIELDS: dict[str, Any] = {
    "session": SESSION,
    "audio": "AAAA",
    "item": ITEM,
    "item_id": "item_1",
    "previous_item_id": "item_0",
    "content_index": 0,
    "audio_end_ms": 1500,
    "audio_start_ms": 20,
    "response": RESPONSE,
    "response_id": "resp_1",
    "output_index": 0,
    "part": {"type": "text", "text": "hi"},
    "delta": "h",
    "text": "hi",
    "call_id": "call_1",
    "name": "lookup",
    "arguments": "{}",
    "error": {"type": "invalid_request_error", "code": "invalid_json", "message": "bad", "event_id": "e9"},
    "rate_limits": [{"name": "tokens", "limit": 8192, "remaining": 8000, "reset_seconds": 0.0}],
    "item_ids": ["item_1", "item_2"],
    "transcript": "hello",
    "usage": {"type": "tokens", "input_tokens": 40, "output_tokens": 2, "total_tokens": 42},
    "text_end": 2,
}


def _example(kind: str, registry: dict[str, Any]) -> dict[str, Any]:
    cls = registry[kind]
    required = [n for n, f in cls.model_fields.items() if f.is_required()]
    optional = [n for n in cls.model_fields if n in FIELDS and n not in required]
    return {"type": kind, "event_id": "evt_1", **{n: FIELDS[n] for n in required + optional}}


@pytest.mark.parametrize("kind", sorted(CLIENT_EVENTS))
def test_client_events_round_trip(kind: str) -> None:
    raw = _example(kind, CLIENT_EVENTS)
    event = decode_client_event(json.dumps(raw))
    assert type(event) is CLIENT_EVENTS[kind]
    assert decode_client_event(encode_event(event)) == event


@pytest.mark.parametrize("kind", sorted(SERVER_EVENTS))
def test_server_events_round_trip(kind: str) -> None:
    event = decode_server_event(json.dumps(_example(kind, SERVER_EVENTS)))
    assert type(event) is SERVER_EVENTS[kind]
    assert decode_server_event(encode_event(event)) == event


def test_server_events_get_unique_ids() -> None:
    cls = SERVER_EVENTS["input_audio_buffer.cleared"]
    ids = {cls().event_id for _ in range(100)}  # type: ignore[attr-defined]
    assert len(ids) == 100


def test_unknown_fields_are_ignored() -> None:
    event = decode_client_event(json.dumps({"type": "session.update", "session": {**SESSION, "voice": "alloy"}}))
    assert event.type == "session.update"


@pytest.mark.parametrize(
    ("raw", "code", "param", "event_id"),
    [
        ("{nope", ErrorCode.INVALID_JSON, None, None),
        ("[1, 2]", ErrorCode.INVALID_EVENT, None, None),
        ('{"event_id": "e1"}', ErrorCode.INVALID_EVENT, "type", "e1"),
        ('{"type": "nope.nope", "event_id": "e2"}', ErrorCode.UNKNOWN_EVENT, "type", "e2"),
        ('{"type": "input_audio_buffer.append", "event_id": "e3"}', ErrorCode.INVALID_EVENT, "audio", "e3"),
        ('{"type": "input_audio_buffer.append", "audio": 7}', ErrorCode.INVALID_EVENT, "audio", None),
        ('{"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [{"type": '
         '"input_text", "text": 5}]}}', ErrorCode.INVALID_EVENT, "item.content.0.text", None),
        ('{"type": "conversation.item.create", "item": {"type": "message", "content": []}}',
         ErrorCode.INVALID_EVENT, "item.role", None),
        ('{"type": "conversation.item.truncate", "item_id": "i", "content_index": -1, "audio_end_ms": 0}',
         ErrorCode.INVALID_EVENT, "content_index", None),
        ('{"type": "session.update", "session": {"max_output_tokens": "lots"}}',
         ErrorCode.INVALID_EVENT, "session.max_output_tokens", None),
    ],
)  # fmt: skip
def test_bad_input_is_a_typed_protocol_error(
    raw: str, code: ErrorCode, param: str | None, event_id: str | None
) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_client_event(raw)
    assert caught.value.code == code
    assert caught.value.param == param
    assert caught.value.event_id == event_id
    assert caught.value.message


def test_schema_names_every_event() -> None:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    kinds = set()
    for union in ("ClientEvent", "ServerEvent"):
        for ref in schema["$defs"][union]["oneOf"]:
            kinds.add(schema["$defs"][ref["$ref"].split("/")[-1]]["properties"]["type"]["const"])
    assert kinds == set(CLIENT_EVENTS) | set(SERVER_EVENTS)
