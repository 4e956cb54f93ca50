"""What the conversation session asks of its driver, and the `Step` it answers every input with.

The session never touches the engine, the socket, the voice activity model or a tool: each input it
receives (`inputs.py`) gives a `Step`, the server events to send and the commands to carry out, each in
order. A command whose work has results names the input that brings them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aural.protocols import client_events as ce
from aural.protocols.models import AudioFormat, FunctionCallItem
from aural.protocols.server_events import ServerEventBase

from ..engine.base import AudioSamples, FunctionSpec, Message, SamplingParams, Truncation


@dataclass(frozen=True)
class StartResponse:
    """Generate a reply to `conversation` under `reply_key` (the assistant item's id) and report its events as
    `Generated` inputs. `in_conversation` False: an out-of-band reply that must not touch the conversation's
    cache."""

    response_id: str
    reply_key: str
    conversation: list[Message]
    params: SamplingParams
    in_conversation: bool


@dataclass(frozen=True)
class CancelResponse:
    """Stop the generation of `response_id` (its last `Generated` input then ends it as cancelled)."""

    response_id: str


@dataclass(frozen=True, eq=False)
class DetectSpeech:
    """Run voice activity detection over the next samples of detection stream `stream`, in order, and report
    the probabilities as `SpeechScored` (a new stream number means: start a fresh detector state)."""

    stream: int
    samples: AudioSamples


@dataclass(frozen=True)
class Prefill:
    """Bring the conversation's cache to `conversation` now, without replying (the user is still talking or the
    turn is about to end: the reply that follows will find it computed)."""

    conversation: list[Message]
    tools: tuple[FunctionSpec, ...] = ()
    truncation: Truncation = field(default_factory=Truncation)


@dataclass(frozen=True)
class StopPrefill:
    """Stop the conversation's running `Prefill` at its next step (what it computed is kept): it reads audio that
    will not be the turn's."""


@dataclass(frozen=True)
class Transcribe:
    """Transcribe a user audio part in a side pass that never touches the conversation's cache, and report its
    events as `Transcribed` inputs."""

    item_id: str
    content_index: int
    conversation: list[Message]
    params: SamplingParams


@dataclass(frozen=True)
class RunTools:
    """Run these calls of server tools (made by response `response_id`) concurrently, and report each output
    as a `ToolReturned` input."""

    response_id: str
    calls: tuple[FunctionCallItem, ...]


@dataclass(frozen=True)
class CancelTools:
    """Stop the server tool calls of these responses that still run; their outputs are not wanted."""

    response_ids: tuple[str, ...]


@dataclass(frozen=True)
class DecodeAudio:
    """Decode the next bytes of the input audio stream (in `format`; a new stream starts when none is open),
    off the event loop and in order, and answer with `AudioDecoded` before the next client event."""

    data: bytes
    format: AudioFormat
    event_id: str | None
    """The client event that sent the bytes (None: a binary frame), named by an error."""


@dataclass(frozen=True)
class EndAudio:
    """End the input audio stream: decode what it still holds and answer with `AudioEnded`, which brings back
    `resume`, the client event that needed the stream ended (a commit, a clear, a change of format)."""

    resume: ce.ClientEvent


@dataclass(frozen=True)
class DecodeClips:
    """Decode whole audio blobs of a client event (each a stream of its own, in `format`) and answer with
    `ClipsDecoded`, which brings back `resume`, the event that carries them."""

    clips: tuple[bytes, ...]
    format: AudioFormat
    resume: ce.ClientEvent


@dataclass(frozen=True)
class CheckSchemas:
    """Check tool parameter schemas of a client event (by `schema_key`): whether each is a JSON Schema the
    model can enforce, which costs milliseconds a schema (compiling its grammar), and answer with
    `SchemasChecked`, which brings back `resume`, the event that carries them."""

    schemas: tuple[tuple[str, Mapping[str, Any]], ...]
    resume: ce.ClientEvent


Decode = DecodeAudio | EndAudio | DecodeClips | CheckSchemas
"""The commands of the ingest stage (client input prepared off the event loop), which the driver answers
before it reads the next client event."""
Command = (
    StartResponse | CancelResponse | DetectSpeech | Prefill | StopPrefill | Transcribe | RunTools | CancelTools | Decode
)


@dataclass(frozen=True)
class Step:
    """What one input gives: server events to send, then commands to carry out, each in order."""

    events: tuple[ServerEventBase, ...] = ()
    commands: tuple[Command, ...] = ()

    def __add__(self, other: Step) -> Step:
        return Step(self.events + other.events, self.commands + other.commands)


def emit(*events: ServerEventBase) -> Step:
    """A step of events alone."""
    return Step(events)


def order(*commands: Command) -> Step:
    """A step of commands alone."""
    return Step((), commands)
