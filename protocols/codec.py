"""Strict decoding and encoding of events, with one registry per direction.

Decoding never raises anything but `ProtocolError`, whose code, message, param and event_id go
straight into an `error` event.
"""

from __future__ import annotations

import json
import typing
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from .client_events import ClientEvent
from .errors import ErrorCode, ProtocolError
from .server_events import ServerEvent

_CLIENT_ADAPTER: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
_SERVER_ADAPTER: TypeAdapter[ServerEvent] = TypeAdapter(ServerEvent)


def _registry(union: Any) -> dict[str, type[BaseModel]]:
    members = typing.get_args(typing.get_args(union)[0])
    return {cls.model_fields["type"].default: cls for cls in members}


CLIENT_EVENTS: dict[str, type[BaseModel]] = _registry(ClientEvent)
"""Client event classes by their `type`."""
SERVER_EVENTS: dict[str, type[BaseModel]] = _registry(ServerEvent)
"""Server event classes by their `type`."""


def _decode(data: str | bytes, adapter: TypeAdapter[Any], registry: dict[str, type[BaseModel]]) -> Any:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"The message is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.INVALID_EVENT, "An event must be a JSON object.")
    event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_EVENT, "The event has no string 'type'.", param="type", event_id=event_id)
    if kind not in registry:
        raise ProtocolError(ErrorCode.UNKNOWN_EVENT, f"Unknown event type '{kind}'.", param="type", event_id=event_id)
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _field_path(obj, first["loc"], missing=first["type"] == "missing")
        where = f" at '{param}'" if param else ""
        raise ProtocolError(
            ErrorCode.INVALID_EVENT,
            f"Invalid '{kind}' event{where}: {first['msg']}.",
            param=param,
            event_id=event_id,
        ) from None


def _field_path(obj: Any, loc: tuple[int | str, ...], *, missing: bool) -> str | None:
    """The dotted path of the offending field in the client's JSON.

    Pydantic's location also names the union members it tried (`message`, `int`, `audio/pcm`): only
    the parts that are real keys or indexes at that point of the document are kept, and a missing
    field's own name.
    """
    parts: list[str] = []
    node = obj
    for index, part in enumerate(loc):
        is_key = isinstance(node, dict) and isinstance(part, str) and part in node
        is_index = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if is_key or is_index:
            node = node[part]
        elif not (missing and index == len(loc) - 1 and isinstance(node, dict)):
            continue
        parts.append(str(part))
    return ".".join(parts) or None


def decode_client_event(data: str | bytes) -> ClientEvent:
    """Parse one client event from a websocket text message.

    Raises:
        ProtocolError: invalid JSON, unknown `type`, or a missing or mistyped field.
    """
    event: ClientEvent = _decode(data, _CLIENT_ADAPTER, CLIENT_EVENTS)
    return event


def decode_server_event(data: str | bytes) -> ServerEvent:
    """Parse one server event (used by the SDK).

    Raises:
        ProtocolError: as for `decode_client_event`; `ErrorCode.UNKNOWN_EVENT` for a type this
            version does not know, which a client should skip.
    """
    event: ServerEvent = _decode(data, _SERVER_ADAPTER, SERVER_EVENTS)
    return event


def encode_event(event: BaseModel) -> str:
    """Serialize an event of either direction to a websocket text message."""
    return event.model_dump_json(exclude_none=True)
