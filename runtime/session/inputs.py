"""What the conversation session takes: one closed union of small facts about the world outside it.

The driver hands each one to `ConversationSession.receive` as it happens: the connection opened, the
client sent an event or a binary frame of audio, the ingest stage decoded audio, the voice activity model
scored audio, the engine went on with a response or a transcription, a server tool returned, the server is
shutting down.
"""

from __future__ import annotations

from dataclasses import dataclass

from aural.protocols import client_events as ce

from ..engine.base import AudioSamples, GenerationDone, GenerationEvent, TextDelta
from ..errors import AudioError


@dataclass(frozen=True)
class Opened:
    """The connection is open: the session introduces itself (`session.created`)."""


@dataclass(frozen=True)
class ClientSent:
    """A client event, decoded and validated by the protocol package."""

    event: ce.ClientEvent


@dataclass(frozen=True)
class AudioFrame:
    """A binary frame of raw input audio in the session's format (`aural.binary-audio`): an append."""

    data: bytes


@dataclass(frozen=True, eq=False)
class AudioDecoded:
    """The ingest stage decoded the bytes of a `DecodeAudio`: their samples, or why they do not decode (the
    stream is then dropped: the next bytes must start a new one)."""

    samples: AudioSamples
    error: AudioError | None
    event_id: str | None


@dataclass(frozen=True, eq=False)
class AudioEnded:
    """The ingest stage ended the input audio stream (an `EndAudio`): its last samples, or why they do not
    decode; then `resume` is handled again."""

    samples: AudioSamples
    error: AudioError | None
    resume: ce.ClientEvent


@dataclass(frozen=True, eq=False)
class ClipsDecoded:
    """The ingest stage decoded the blobs of a `DecodeClips`, each to its samples or to why it does not
    decode; then `resume` is handled again."""

    clips: dict[bytes, AudioSamples | AudioError]
    resume: ce.ClientEvent


@dataclass(frozen=True)
class SchemasChecked:
    """The ingest stage checked the schemas of a `CheckSchemas`: why each (by `schema_key`) cannot be a tool's
    parameters, None where it can; then `resume` is handled again."""

    verdicts: dict[str, str | None]
    resume: ce.ClientEvent


@dataclass(frozen=True)
class SpeechScored:
    """The speech probabilities of the next 32 ms windows of detection stream `stream` (a `DetectSpeech`)."""

    stream: int
    probabilities: tuple[float, ...]


@dataclass(frozen=True)
class Generated:
    """The engine went on with response `response_id` (a `StartResponse`): text, a call, or its end."""

    response_id: str
    event: GenerationEvent


@dataclass(frozen=True)
class Transcribed:
    """The side pass transcribing an audio part (a `Transcribe`) went on: text, or its end."""

    item_id: str
    content_index: int
    event: TextDelta | GenerationDone


@dataclass(frozen=True)
class ShuttingDown:
    """The server is shutting down and cannot wait any longer: the running response ends as cancelled, server
    tool calls stop, and no new response starts."""


@dataclass(frozen=True)
class ToolReturned:
    """A server tool's call (of a `RunTools`) finished with `output`, a failure's included."""

    call_id: str
    output: str


Input = (
    Opened
    | ClientSent
    | AudioFrame
    | AudioDecoded
    | AudioEnded
    | ClipsDecoded
    | SchemasChecked
    | SpeechScored
    | Generated
    | Transcribed
    | ToolReturned
    | ShuttingDown
)
