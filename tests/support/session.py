"""Helpers for driving the sans-IO conversation session in tests: send wire events, read what came out."""

from __future__ import annotations

import json
from typing import Any

from aural.protocols import decode_client_event
from aural.runtime.engine.base import SAMPLE_RATE, ModelCapabilities
from aural.runtime.session.commands import Output
from aural.runtime.session.session import ConversationSession

CAPABILITIES = ModelCapabilities(clip_samples=30 * SAMPLE_RATE, context_window=8192, check_schema=lambda schema: None)
"""A model like Qwen2-Audio's (30 s clips, an 8k context) that can enforce any schema."""


def send(session: ConversationSession, /, **event: Any) -> list[Output]:
    """Decode `event` as a client's JSON would be and hand it to the session."""
    return session.handle(decode_client_event(json.dumps(event)))


def types(outputs: list[Output]) -> list[str]:
    """The event types, and the class names of commands, in order."""
    return [o.type if hasattr(o, "type") else type(o).__name__ for o in outputs]


def of(outputs: list[Output], kind: type) -> list[Any]:
    """The outputs of one class."""
    return [o for o in outputs if isinstance(o, kind)]
