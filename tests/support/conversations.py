"""Conversations for tests of what outlives a session (snapshots, stores): one of every kind of item."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np

from aural.protocols.server_events import ConversationItemDone
from aural.runtime.engine.base import GenerationDone, ToolCallDelta, ToolCallDone
from aural.runtime.session.commands import StartResponse
from aural.runtime.session.session import ConversationSession
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import Output, generated, of
from tests.support.session import send as send_event

WEATHER = {
    "type": "function",
    "name": "weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def pcm16(seconds: float, pitch: float = 300.0) -> str:
    """A tone as the session's default input format holds it: base64 of 24 kHz pcm16."""
    t = np.arange(int(seconds * 24000)) / 24000
    return base64.b64encode((np.sin(2 * np.pi * pitch * t) * 8000).astype("<i2").tobytes()).decode()


def respond(session: ConversationSession, *events: str | ToolCallDelta | ToolCallDone) -> StartResponse:
    """A response of the session that the engine answers with `events`, to its end."""
    start: StartResponse
    (start,) = of(send_event(session, type="response.create"), StartResponse)
    for event in events:
        generated(session, start.response_id, event)
    generated(session, start.response_id, GenerationDone("stop"))
    return start


def conversation_of_every_kind(
    after_each: Callable[[ConversationSession], None] = lambda _: None,
) -> ConversationSession:
    """Items with audio (committed, and several parts in one item), a turn of text and a function call, the call's
    output, a truncated assistant reply and a truncated audio part, after a `session.update`; `after_each` runs
    after each client event and each response."""
    session = ConversationSession("tiny", CAPABILITIES)

    def send(**event: Any) -> list[Output]:
        outputs = send_event(session, **event)
        after_each(session)
        return outputs

    send(
        type="session.update",
        session={
            "instructions": "Answer briefly.",
            "tools": [WEATHER],
            "temperature": 0.7,
            "max_output_tokens": 256,
            "truncation": {"type": "retention_ratio", "retention_ratio": 0.5},
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}}},
        },
    )
    send(type="input_audio_buffer.append", audio=pcm16(0.5))
    (committed,) = of(send(type="input_audio_buffer.commit"), ConversationItemDone)
    content = [
        {"type": "input_audio", "audio": pcm16(0.3, 440)},
        {"type": "input_text", "text": "and this"},
        {"type": "input_audio", "audio": pcm16(0.2, 550)},
    ]
    send(type="conversation.item.create", item={"type": "message", "role": "user", "content": content})
    arguments = '{"city": "Oslo"}'
    respond(session, "Let me check.", ToolCallDelta(0, "weather", arguments), ToolCallDone(0, "weather", arguments))
    after_each(session)
    call = next(s.item for s in session.items if s.item.type == "function_call")
    output = {"type": "function_call_output", "call_id": call.call_id, "output": '{"sky": "clear"}'}
    send(type="conversation.item.create", item=output)
    reply = respond(session, "It is clear in Oslo today.")
    after_each(session)
    send(
        type="conversation.item.truncate",
        item_id=reply.reply_key,
        content_index=0,
        audio_end_ms=0,
        text_end=11,
    )
    send(type="conversation.item.truncate", item_id=committed.item.id, content_index=0, audio_end_ms=300)
    return session
