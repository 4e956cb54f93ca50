"""Events a client sends (GA OpenAI Realtime), one class each, and their discriminated union."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .models import InputItem, Item, ResponseParams, SessionConfig, WireModel


class ClientEventBase(WireModel):
    """Every client event may carry an `event_id`, echoed in errors it causes."""

    event_id: str | None = None


class SessionUpdate(ClientEventBase):
    type: Literal["session.update"] = "session.update"
    session: SessionConfig


class InputAudioBufferAppend(ClientEventBase):
    """Appends base64 audio, in the session's input format, to the input buffer."""

    type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"
    audio: str


class InputAudioBufferCommit(ClientEventBase):
    type: Literal["input_audio_buffer.commit"] = "input_audio_buffer.commit"


class InputAudioBufferClear(ClientEventBase):
    type: Literal["input_audio_buffer.clear"] = "input_audio_buffer.clear"


class ConversationItemCreate(ClientEventBase):
    """Adds an item after `previous_item_id` (`"root"`: at the start; absent: at the end)."""

    type: Literal["conversation.item.create"] = "conversation.item.create"
    item: Item
    previous_item_id: str | None = None


class ConversationItemDelete(ClientEventBase):
    type: Literal["conversation.item.delete"] = "conversation.item.delete"
    item_id: str


class ConversationItemRetrieve(ClientEventBase):
    type: Literal["conversation.item.retrieve"] = "conversation.item.retrieve"
    item_id: str


class ConversationItemTruncate(ClientEventBase):
    """Cut a content part: an `input_audio` part at `audio_end_ms`, an assistant's `output_text` part at
    `text_end` characters (Aural extension: Aural replies in text, so a client whose text-to-speech was
    interrupted says how much of the text was spoken; `audio_end_ms` is then ignored)."""

    type: Literal["conversation.item.truncate"] = "conversation.item.truncate"
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)
    text_end: int | None = Field(default=None, ge=0)


class ResponseCreate(ClientEventBase):
    type: Literal["response.create"] = "response.create"
    response: ResponseParams | None = None


class ResponseCancel(ClientEventBase):
    type: Literal["response.cancel"] = "response.cancel"
    response_id: str | None = None


ClientEvent = Annotated[
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ConversationItemTruncate
    | ResponseCreate
    | ResponseCancel,
    Field(discriminator="type"),
]

__all__ = [
    "ClientEvent",
    "ConversationItemCreate",
    "ConversationItemDelete",
    "ConversationItemRetrieve",
    "ConversationItemTruncate",
    "InputAudioBufferAppend",
    "InputAudioBufferClear",
    "InputAudioBufferCommit",
    "InputItem",
    "ResponseCancel",
    "ResponseCreate",
    "SessionUpdate",
]
