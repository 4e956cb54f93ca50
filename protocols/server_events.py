"""Events the server sends (GA OpenAI Realtime), one class each, and their discriminated union.

Every server event gets a fresh, unique `event_id` when it is constructed.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import Field

from .models import ErrorDetail, Item, RateLimit, Response, SessionConfig, TextPart, WireModel


def new_id(prefix: str) -> str:
    """A unique id in the style of the OpenAI API (`event_…`, `item_…`, `resp_…`)."""
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class ServerEventBase(WireModel):
    event_id: str = Field(default_factory=lambda: new_id("event"))


class Error(ServerEventBase):
    type: Literal["error"] = "error"
    error: ErrorDetail


class SessionCreated(ServerEventBase):
    type: Literal["session.created"] = "session.created"
    session: SessionConfig


class SessionUpdated(ServerEventBase):
    type: Literal["session.updated"] = "session.updated"
    session: SessionConfig


class InputAudioBufferCommitted(ServerEventBase):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


class InputAudioBufferCleared(ServerEventBase):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class InputAudioBufferSpeechStarted(ServerEventBase):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class InputAudioBufferSpeechStopped(ServerEventBase):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class InputAudioBufferTimeoutTriggered(ServerEventBase):
    """Server VAD heard no speech for `idle_timeout_ms` after a response: the audio is committed and a
    response created."""

    type: Literal["input_audio_buffer.timeout_triggered"] = "input_audio_buffer.timeout_triggered"
    audio_start_ms: int
    audio_end_ms: int
    item_id: str


class TranscriptUsage(WireModel):
    """Token usage of one input transcription (Qwen2-Audio transcribes in a side pass)."""

    type: Literal["tokens"] = "tokens"
    input_tokens: int
    output_tokens: int
    total_tokens: int


class ConversationItemInputAudioTranscriptionDelta(ServerEventBase):
    type: Literal["conversation.item.input_audio_transcription.delta"] = (
        "conversation.item.input_audio_transcription.delta"
    )
    item_id: str
    content_index: int
    delta: str


class ConversationItemInputAudioTranscriptionCompleted(ServerEventBase):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int
    transcript: str
    usage: TranscriptUsage


class ConversationItemInputAudioTranscriptionFailed(ServerEventBase):
    type: Literal["conversation.item.input_audio_transcription.failed"] = (
        "conversation.item.input_audio_transcription.failed"
    )
    item_id: str
    content_index: int
    error: ErrorDetail


class ConversationItemAdded(ServerEventBase):
    type: Literal["conversation.item.added"] = "conversation.item.added"
    item: Item
    previous_item_id: str | None = None


class ConversationItemDone(ServerEventBase):
    type: Literal["conversation.item.done"] = "conversation.item.done"
    item: Item
    previous_item_id: str | None = None


class ConversationItemDeleted(ServerEventBase):
    type: Literal["conversation.item.deleted"] = "conversation.item.deleted"
    item_id: str


class ConversationItemTruncated(ServerEventBase):
    type: Literal["conversation.item.truncated"] = "conversation.item.truncated"
    item_id: str
    content_index: int
    audio_end_ms: int


class ConversationItemRetrieved(ServerEventBase):
    type: Literal["conversation.item.retrieved"] = "conversation.item.retrieved"
    item: Item


class ResponseCreated(ServerEventBase):
    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseDone(ServerEventBase):
    type: Literal["response.done"] = "response.done"
    response: Response


class ResponseOutputItemAdded(ServerEventBase):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    response_id: str
    output_index: int
    item: Item


class ResponseOutputItemDone(ServerEventBase):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    response_id: str
    output_index: int
    item: Item


class ResponseContentPartAdded(ServerEventBase):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: TextPart


class ResponseContentPartDone(ServerEventBase):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: TextPart


class ResponseOutputTextDelta(ServerEventBase):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputTextDone(ServerEventBase):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    text: str


class ResponseFunctionCallArgumentsDelta(ServerEventBase):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class ResponseFunctionCallArgumentsDone(ServerEventBase):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


class RateLimitsUpdated(ServerEventBase):
    type: Literal["rate_limits.updated"] = "rate_limits.updated"
    rate_limits: list[RateLimit]


RESUME_QUERY = "aural.resume"
"""The query parameter that names the session a new connection takes over (Aural extension):
`/v1/realtime?model=NAME&aural.resume=<session id>`."""


class AuralSessionResumed(ServerEventBase):
    """Aural extension: this connection took over a conversation whose previous connection dropped (it named it with
    the `aural.resume` query parameter, `RESUME_QUERY`). It follows the `session.created` of the same session.
    Server events made while no connection held the conversation were not kept: `item_ids` lists the conversation's
    items in order (read any with `conversation.item.retrieve`), and `response_id` names a response still running,
    whose remaining events follow (None: none runs). Client events sent into the lost connection may not have
    arrived: `last_event_id` is the `event_id` of the last one the server took (None: none), so the client sends
    again those it sent after it."""

    type: Literal["aural.session.resumed"] = "aural.session.resumed"
    item_ids: list[str]
    response_id: str | None = None
    last_event_id: str | None = None


ServerEvent = Annotated[
    Error
    | SessionCreated
    | SessionUpdated
    | InputAudioBufferCommitted
    | InputAudioBufferCleared
    | InputAudioBufferSpeechStarted
    | InputAudioBufferSpeechStopped
    | InputAudioBufferTimeoutTriggered
    | ConversationItemAdded
    | ConversationItemDone
    | ConversationItemDeleted
    | ConversationItemTruncated
    | ConversationItemRetrieved
    | ConversationItemInputAudioTranscriptionDelta
    | ConversationItemInputAudioTranscriptionCompleted
    | ConversationItemInputAudioTranscriptionFailed
    | ResponseCreated
    | ResponseDone
    | ResponseOutputItemAdded
    | ResponseOutputItemDone
    | ResponseContentPartAdded
    | ResponseContentPartDone
    | ResponseOutputTextDelta
    | ResponseOutputTextDone
    | ResponseFunctionCallArgumentsDelta
    | ResponseFunctionCallArgumentsDone
    | RateLimitsUpdated
    | AuralSessionResumed,
    Field(discriminator="type"),
]
