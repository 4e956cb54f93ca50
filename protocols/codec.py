"""Strict decoding and encoding of events, with one registry per direction.

Decoding never raises anything but `ProtocolError`, whose code, message, param and event_id go
straight into an `error` event. Before a message's fields are validated, its JSON is held to what any
event can be: nesting at most `Limits.max_json_depth` deep (a deeper one would exhaust the parser's
recursion), finite numbers and integers of at most 19 digits (`1e400`, `10**5000`), and text that UTF-8
can carry (a lone surrogate escape such as `"\\ud800"` could never be echoed back). A client event is
then held to its `Limits` (`limits.check_event`). Encoding never fails: it is the last line of defence
for text that slipped through.
"""

from __future__ import annotations

import json
import math
import re
import typing
from typing import Any, NoReturn

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from .client_events import ClientEvent
from .errors import ErrorCode, ProtocolError
from .limits import DEFAULT_LIMITS, Limits, check_event, json_depth
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


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A JSON escape of a UTF-16 surrogate: the only way a lone one can reach a decoded string."""
_MAX_INT_DIGITS = 19
CLOSE_REASON_BYTES = 123
"""The longest close reason a websocket close frame can carry."""


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ProtocolError(ErrorCode.NUMBER_OUT_OF_RANGE, f"The number {text[:32]} is out of range.")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ProtocolError(ErrorCode.NUMBER_OUT_OF_RANGE, f"Integers may have {_MAX_INT_DIGITS} digits at most.")
    return int(text)


def _no_constant(name: str) -> NoReturn:
    raise ProtocolError(ErrorCode.INVALID_JSON, f"The message is not valid JSON: '{name}' is not a JSON value.")


def _loads(data: str | bytes) -> Any:
    try:
        return json.loads(data, parse_float=_finite, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise ProtocolError(ErrorCode.NESTING_TOO_DEEP, "The message nests too deeply.") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"The message is not valid JSON: {exc}") from None


def _encodable(text: str) -> bool:
    if text.isascii():  # constant time in CPython
        return True
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _lone_surrogate(obj: Any) -> str | None:
    """The dotted path of the first string (or key) in `obj` that UTF-8 cannot encode; "" for `obj` itself."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(obj, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str) and not _encodable(node):
            return ".".join(path)
        if isinstance(node, dict):
            for key, value in node.items():
                if not _encodable(key):
                    return ".".join(path)
                stack.append((value, (*path, key)))
        elif isinstance(node, list):
            stack.extend((value, (*path, str(index))) for index, value in enumerate(node))
    return None


def _check_json(data: str | bytes, obj: Any, event_id: str | None, max_depth: int) -> None:
    """Hold a parsed message to what any event can be: its nesting, and text UTF-8 can carry."""
    text = data if isinstance(data, str) else data.decode(errors="replace")
    if text.count("{") + text.count("[") > max_depth and json_depth(obj) > max_depth:
        raise ProtocolError(
            ErrorCode.NESTING_TOO_DEEP,
            f"The message nests objects and arrays more than {max_depth} deep.",
            event_id=event_id,
        )
    if _SURROGATE_ESCAPE.search(text) and (where := _lone_surrogate(obj)) is not None:
        raise ProtocolError(
            ErrorCode.INVALID_TEXT,
            "The message holds a lone UTF-16 surrogate escape, which is not text.",
            param=where or None,
            event_id=event_id,
        )


def _decode(
    data: str | bytes, adapter: TypeAdapter[Any], registry: dict[str, type[BaseModel]], limits: Limits | None
) -> Any:
    obj = _loads(data)
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.INVALID_EVENT, "An event must be a JSON object.")
    event_id = obj.get("event_id")
    max_id = (limits or DEFAULT_LIMITS).max_event_id_chars
    if not (isinstance(event_id, str) and len(event_id) <= max_id and _encodable(event_id)):
        event_id = None  # not safe to echo
    _check_json(data, obj, event_id, (limits or DEFAULT_LIMITS).max_json_depth)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_EVENT, "The event has no string 'type'.", param="type", event_id=event_id)
    if kind not in registry:
        raise ProtocolError(ErrorCode.UNKNOWN_EVENT, f"Unknown event type '{kind}'.", param="type", event_id=event_id)
    try:
        event = adapter.validate_python(obj)
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
    if limits is not None:
        try:
            check_event(event, limits)
        except ProtocolError as exc:
            exc.event_id = event_id
            raise
    return event


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


def decode_client_event(data: str | bytes, limits: Limits = DEFAULT_LIMITS) -> ClientEvent:
    """Parse one client event from a websocket text message and hold it to `limits`.

    Raises:
        ProtocolError: invalid JSON, unknown `type`, a missing or mistyped field, or a broken bound.
    """
    event: ClientEvent = _decode(data, _CLIENT_ADAPTER, CLIENT_EVENTS, limits)
    return event


def decode_server_event(data: str | bytes) -> ServerEvent:
    """Parse one server event (used by the SDK).

    Raises:
        ProtocolError: as for `decode_client_event`; `ErrorCode.UNKNOWN_EVENT` for a type this
            version does not know, which a client should skip.
    """
    event: ServerEvent = _decode(data, _SERVER_ADAPTER, SERVER_EVENTS, None)
    return event


def encode_event(event: BaseModel) -> str:
    """Serialize an event of either direction to a websocket text message.

    Never fails: text UTF-8 cannot carry (a lone surrogate, which decoding refuses, so only a bug lets one
    through) is sent with U+FFFD in its place rather than losing the event and the connection.
    """
    try:
        return event.model_dump_json(exclude_none=True)
    except PydanticSerializationError:
        return json.dumps(_scrubbed(event.model_dump(mode="json", exclude_none=True)), separators=(",", ":"))


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return value if _encodable(value) else value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_scrubbed(key): _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    return value


def close_reason(text: str) -> bytes:
    """`text` as a websocket close reason: UTF-8, cut on a character boundary to fit a close frame."""
    encoded = str(_scrubbed(text)).encode()[:CLOSE_REASON_BYTES]
    return encoded.decode(errors="ignore").encode()
