"""The AsyncAPI 3 description of the realtime websocket, generated from the event classes.

`asyncapi.json` describes the server: one channel, `/v1/realtime`, on which it receives every client event
and sends every server event. Each message's payload is the event's schema, the same definitions as
`schema.json`'s `$defs` (under `components.schemas`). Aural's `aural.` extensions are described where they
live (the binary-audio subprotocol and the resume query on the channel's websocket binding, the resumed
event as a message) and marked with `x-aural-extension: true`.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .codec import CLIENT_EVENTS, SERVER_EVENTS
from .extensions import BINARY_AUDIO, EXTENSIONS, FIELD_EXTENSIONS
from .schema import build_schema, render_json
from .server_events import RESUME_QUERY

ASYNCAPI_PATH = Path(__file__).with_name("asyncapi.json")
CHANNEL = "realtime"
BINARY_FRAME = "BinaryAudioFrame"


def _summary(cls: type[BaseModel]) -> str:
    """The first paragraph of a class's docstring, on one line ("" when it has none)."""
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(doc.split("\n\n")[0].split())


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: value.replace("#/$defs/", "#/components/schemas/") if key == "$ref" else _rewrite_refs(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(value) for value in node]
    return node


def _message(kind: str, cls: type[BaseModel]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": kind,
        "title": kind,
        "payload": {"$ref": f"#/components/schemas/{cls.__name__}"},
    }
    if text := _summary(cls):
        message["summary"] = text
    if kind.startswith("aural."):
        message["x-aural-extension"] = True
    return message


def _binding() -> dict[str, Any]:
    """The websocket handshake: its query and headers, with the extensions that ride on them."""
    described = {extension.name: extension.description for extension in EXTENSIONS}
    query = {
        "type": "object",
        "properties": {
            "model": {"type": "string", "description": "The model to talk to (any name the server serves)."},
            RESUME_QUERY: {
                "type": "string",
                "description": f"Aural extension: {described[RESUME_QUERY]}",
                "x-aural-extension": True,
            },
        },
    }
    headers = {
        "type": "object",
        "properties": {
            "Authorization": {"type": "string", "description": "`Bearer <key>` when the server requires keys."},
            "Sec-WebSocket-Protocol": {
                "type": "string",
                "description": "Optional. `realtime` (echoed), `openai-insecure-api-key.<key>` (a browser's key), "
                f"`{BINARY_AUDIO}` (Aural extension: {described[BINARY_AUDIO]})",
            },
        },
    }
    return {"ws": {"method": "GET", "query": query, "headers": headers, "bindingVersion": "0.1.0"}}


def _description() -> str:
    lines = [
        "Aural speaks the OpenAI Realtime GA protocol over one websocket: JSON text messages, one event each, "
        "with a `type`. Every server event carries a unique `event_id`. Bad input is answered with an `error` "
        "event and the conversation goes on. The full reference: docs/protocol.md.",
        "",
        "Aural extensions (`x-aural-extension: true` here); OpenAI clients never need them:",
        "",
        *(f"- `{extension.name}` ({extension.kind}): {extension.description}" for extension in EXTENSIONS),
        *(f"- `{where}`: {what}" for where, what in FIELD_EXTENSIONS),
    ]
    return "\n".join(lines)


def build_asyncapi() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the realtime websocket."""
    client, server = CLIENT_EVENTS.values(), SERVER_EVENTS.values()
    messages = {cls.__name__: _message(kind, cls) for kind, cls in [*CLIENT_EVENTS.items(), *SERVER_EVENTS.items()]}
    messages[BINARY_FRAME] = {
        "name": BINARY_FRAME,
        "title": "binary audio frame",
        "summary": f"Aural extension: input audio as a binary websocket message, under the `{BINARY_AUDIO}` "
        "subprotocol only.",
        "contentType": "application/octet-stream",
        "payload": {"type": "string", "format": "binary"},
        "x-aural-extension": True,
    }

    def refs(names: list[str]) -> list[dict[str, str]]:
        return [{"$ref": f"#/channels/{CHANNEL}/messages/{name}"} for name in names]

    received = [cls.__name__ for cls in client] + [BINARY_FRAME]
    sent = [cls.__name__ for cls in server]
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Aural realtime API",
            "version": version("aural"),
            "description": _description(),
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "localhost:8765",
                "protocol": "ws",
                "description": "`aural serve --port 8765`; `wss` with `--tls-cert` and `--tls-key`.",
            }
        },
        "channels": {
            CHANNEL: {
                "address": "/v1/realtime",
                "title": "A realtime conversation",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": _binding(),
            }
        },
        "operations": {
            "receiveClientEvents": {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": "The events a client sends.",
                "messages": refs(received),
            },
            "sendServerEvents": {
                "action": "send",
                "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": "The events the server sends.",
                "messages": refs(sent),
            },
        },
        "components": {"messages": messages, "schemas": _rewrite_refs(build_schema()["$defs"])},
    }


def render_asyncapi() -> str:
    """The document as the exact text kept in `asyncapi.json`."""
    return render_json(build_asyncapi())
