"""Aural's async Python client: typed OpenAI Realtime (GA) events over `websockets`, or over any other
`aural.protocols.transport.Opener` (`aural.runtime.local(...)` runs the model in this process).

import aural.sdk

async with aural.sdk.connect("ws://127.0.0.1:8000/v1/realtime", model="tiny") as conn:
    await conn.add_message("user", audio="question.wav", text="What is said here?")
    async for delta in conn.create_response():
        print(delta, end="", flush=True)

The protocol's events and models are importable from here too (`aural.sdk.events`): `ResponseDone`,
`ServerVad`, `PcmFormat`, `SessionConfig`...
"""

from . import events
from .audio import WIRE_RATE, AudioSource, encode_audio, read_audio_file, to_pcm16
from .connection import Connection, connect
from .errors import AuralConnectionError, AuralError, AuralProtocolError, AuralResponseError, AuralServerError
from .events import *  # noqa: F403  (the protocol's events and models, listed in `events.__all__`)
from .params import ReplySettings, ResponseSettings, SessionSettings, ToolDefinitions
from .response import EventHandler, ResponseStream
from .tools import ArgumentsError, Tool, ToolCall, Tools, tool

__all__ = [
    "WIRE_RATE",
    "ArgumentsError",
    "AudioSource",
    "AuralConnectionError",
    "AuralError",
    "AuralProtocolError",
    "AuralResponseError",
    "AuralServerError",
    "Connection",
    "EventHandler",
    "ReplySettings",
    "ResponseSettings",
    "ResponseStream",
    "SessionSettings",
    "Tool",
    "ToolCall",
    "ToolDefinitions",
    "Tools",
    "connect",
    "encode_audio",
    "read_audio_file",
    "to_pcm16",
    "tool",
    *events.__all__,
]
