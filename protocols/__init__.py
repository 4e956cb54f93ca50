"""Aural's wire protocol: OpenAI Realtime (GA) events as typed classes, strict codec, JSON Schema.

Standard library and pydantic only: imported by both the runtime and the SDK.
"""

from . import client_events, models, server_events
from .client_events import ClientEvent
from .codec import CLIENT_EVENTS, SERVER_EVENTS, decode_client_event, decode_server_event, encode_event
from .errors import ErrorCode, ProtocolError
from .server_events import ServerEvent, new_id

__all__ = [
    "CLIENT_EVENTS",
    "SERVER_EVENTS",
    "ClientEvent",
    "ErrorCode",
    "ProtocolError",
    "ServerEvent",
    "client_events",
    "decode_client_event",
    "decode_server_event",
    "encode_event",
    "models",
    "new_id",
    "server_events",
]
