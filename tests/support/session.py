"""Driving the sans-I/O conversation session in tests: inputs in, what came out as one ordered list.

`receive` answers the session's decoding commands at once, as the driver's ingest stage does (here, in the
test's thread), and lists what the input gave: the events, then the other commands, each in order.
"""

from __future__ import annotations

import json
from typing import Any
from weakref import WeakKeyDictionary

from aural.protocols import decode_client_event
from aural.protocols.server_events import ServerEventBase
from aural.runtime.engine.base import GenerationEvent, TextDelta
from aural.runtime.server.ingest import Ingest
from aural.runtime.session.commands import CheckSchemas, Command, DecodeAudio, DecodeClips, EndAudio
from aural.runtime.session.inputs import ClientSent, Generated, Input, SpeechScored
from aural.runtime.session.session import ConversationSession

Output = ServerEventBase | Command


_INGESTS: WeakKeyDictionary[ConversationSession, Ingest] = WeakKeyDictionary()


def receive(session: ConversationSession, received: Input) -> list[Output]:
    """Hand the session one input, and the answers to its decoding commands."""
    ingest = _INGESTS.setdefault(session, Ingest(session.capabilities.check_schema, session.max_samples))
    events: list[Output] = []
    commands: list[Output] = []
    pending = [received]
    while pending:
        step = session.receive(pending.pop(0))
        events += step.events
        for command in step.commands:
            if isinstance(command, DecodeAudio | EndAudio | DecodeClips | CheckSchemas):
                pending.append(ingest.answer(command))
            else:
                commands.append(command)
    return [*events, *commands]


def send(session: ConversationSession, /, **event: Any) -> list[Output]:
    """Decode `event` as a client's JSON would be and hand it to the session."""
    return receive(session, ClientSent(decode_client_event(json.dumps(event))))


def generated(session: ConversationSession, response_id: str, event: GenerationEvent | str) -> list[Output]:
    """The engine went on with a response: an event, or text (a delta)."""
    return receive(session, Generated(response_id, TextDelta(event, ()) if isinstance(event, str) else event))


def scored(session: ConversationSession, stream: int, probabilities: list[float]) -> list[Output]:
    """The voice activity model scored the next windows of a detection stream."""
    return receive(session, SpeechScored(stream, tuple(probabilities)))


def types(outputs: list[Output]) -> list[str]:
    """The event types, and the class names of commands, in order."""
    return [o.type if hasattr(o, "type") else type(o).__name__ for o in outputs]


def of(outputs: list[Output], kind: type) -> list[Any]:
    """The outputs of one class."""
    return [o for o in outputs if isinstance(o, kind)]
