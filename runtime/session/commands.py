"""What the conversation state machine asks of its driver: engine commands, and the `error` event.

The session never touches the engine, the socket or the voice activity model itself; it returns these
commands in order among the server events, and the driver carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass

from aural.protocols import server_events as se
from aural.protocols.errors import ProtocolError
from aural.protocols.models import ErrorDetail, FunctionCallItem
from aural.protocols.server_events import ServerEventBase

from ..engine.base import AudioSamples, FunctionSpec, Message, SamplingParams


@dataclass(frozen=True)
class StartResponse:
    """Command: generate a reply to `conversation` under `reply_key` (the assistant item's id).
    `in_conversation` False: an out-of-band reply that must not touch the conversation's cache."""

    response_id: str
    reply_key: str
    conversation: list[Message]
    params: SamplingParams
    in_conversation: bool


@dataclass(frozen=True)
class CancelResponse:
    """Command: stop the generation of `response_id` (it then reports `on_done` as cancelled)."""

    response_id: str


@dataclass(frozen=True)
class DetectSpeech:
    """Command: run voice activity detection over the next samples of detection stream `stream` and
    report the probabilities to `on_speech` (a new stream number means: start a fresh detector state)."""

    stream: int
    samples: AudioSamples


@dataclass(frozen=True)
class Prefill:
    """Command: bring the conversation's cache to `conversation` now, without replying (the user is
    still talking or the turn is about to end: the reply that follows will find it computed)."""

    conversation: list[Message]
    tools: tuple[FunctionSpec, ...] = ()


@dataclass(frozen=True)
class Transcribe:
    """Command: transcribe a user audio part in a side pass that never touches the conversation's
    cache; report through `on_transcript_delta` / `on_transcript_done`."""

    item_id: str
    content_index: int
    conversation: list[Message]
    params: SamplingParams


@dataclass(frozen=True)
class RunTools:
    """Command: run these calls of server tools (made by response `response_id`) concurrently, and report each
    output to `on_tool_result`."""

    response_id: str
    calls: tuple[FunctionCallItem, ...]


@dataclass(frozen=True)
class CancelTools:
    """Command: stop the server tool calls of these responses that still run; their outputs are not wanted."""

    response_ids: tuple[str, ...]


Command = StartResponse | CancelResponse | DetectSpeech | Prefill | Transcribe | RunTools | CancelTools
Output = ServerEventBase | Command


def error_event(exc: ProtocolError) -> se.Error:
    """The `error` event for a protocol error."""
    detail = ErrorDetail(
        type=exc.error_type, code=exc.code.value, message=exc.message, param=exc.param, event_id=exc.event_id
    )
    return se.Error(error=detail)
