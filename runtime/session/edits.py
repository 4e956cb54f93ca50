"""Items a client makes or edits: their audio, validation, truncation. Pure functions of the item."""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Callable

from aural.protocols import client_events as ce
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import FunctionCallItem, FunctionCallOutputItem, InputAudio, Item, MessageItem, OutputText
from aural.protocols.server_events import new_id

from ..engine.base import SAMPLE_RATE, AudioSamples
from .input_audio import MIN_AUDIO, MIN_AUDIO_MS
from .items import StoredItem

_ALLOWED = {"user": ("input_text", "input_audio"), "system": ("input_text",), "assistant": ("output_text",)}


def b64decode(data: str, param: str) -> bytes:
    """Raises: ProtocolError for anything that is not valid base64."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(ErrorCode.BAD_AUDIO, "Audio must be valid base64.", param=param) from None


def audio_clips(event: ce.ClientEvent) -> tuple[bytes, ...]:
    """The audio blobs the items of a client event carry (`conversation.item.create`, a `response.create`'s
    input), once each; what is not valid base64 is left to `client_item` to refuse, in its order."""
    if isinstance(event, ce.ConversationItemCreate):
        items: list[ce.InputItem] = [event.item]
    elif isinstance(event, ce.ResponseCreate) and event.response is not None and event.response.input:
        items = event.response.input
    else:
        return ()
    clips: dict[bytes, None] = {}
    for item in items:
        for part in item.content if isinstance(item, MessageItem) else []:
            if isinstance(part, InputAudio) and part.audio:
                with contextlib.suppress(ProtocolError):
                    clips[b64decode(part.audio, "audio")] = None
    return tuple(clips)


def client_item(item: Item, param: str, decode: Callable[[bytes], AudioSamples]) -> StoredItem:
    """Validate an item a client made and decode its audio with `decode` (the session's input format).

    Raises:
        ProtocolError: content a role cannot hold, missing or undecodable audio, audio shorter than 100 ms.
    """
    if isinstance(item, FunctionCallItem | FunctionCallOutputItem):
        return StoredItem(item.model_copy(update={"id": item.id or new_id("item"), "status": "completed"}))
    audio: dict[int, AudioSamples] = {}
    content = []
    for index, part in enumerate(item.content):
        where = f"{param}.content.{index}"
        if part.type not in _ALLOWED[item.role]:
            message = f"A {item.role} message cannot hold '{part.type}' content."
            raise ProtocolError(ErrorCode.INVALID_VALUE, message, param=f"{where}.type")
        if isinstance(part, InputAudio):
            if not part.audio:
                raise ProtocolError(ErrorCode.INVALID_VALUE, "input_audio needs 'audio'.", param=f"{where}.audio")
            samples = decode(b64decode(part.audio, f"{where}.audio"))
            if samples.size < MIN_AUDIO:
                raise ProtocolError(
                    ErrorCode.BAD_AUDIO, f"Audio content must hold at least {MIN_AUDIO_MS} ms.", param=f"{where}.audio"
                )
            audio[index] = samples
            part = InputAudio(transcript=part.transcript)
        content.append(part)
    stored = MessageItem(id=item.id or new_id("item"), role=item.role, status="completed", content=content)
    return StoredItem(stored, audio)


def truncated(stored: StoredItem, content_index: int, audio_end_ms: int, text_end: int | None) -> StoredItem:
    """`stored` with one content part cut: input audio at `audio_end_ms`, output text at `text_end`
    characters. Whatever the model computed past the cut is forgotten with it.

    Raises:
        ProtocolError: no such part, a part that cannot be cut, or a cut outside the part.
    """
    item = stored.item
    if not isinstance(item, MessageItem) or not 0 <= content_index < len(item.content):
        raise ProtocolError(ErrorCode.INVALID_VALUE, "The item has no such content part.", param="content_index")
    part = item.content[content_index]
    audio = dict(stored.audio)
    if isinstance(part, InputAudio):
        samples = audio[content_index]
        keep = audio_end_ms * SAMPLE_RATE // 1000
        duration_ms = samples.size * 1000 // SAMPLE_RATE
        if keep > samples.size:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"audio_end_ms {audio_end_ms} is past the end of the audio ({duration_ms} ms).",
                param="audio_end_ms",
            )
        if keep < MIN_AUDIO:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"Keep at least {MIN_AUDIO_MS} ms of audio; delete the item to drop it all.",
                param="audio_end_ms",
            )
        audio[content_index] = samples[:keep]
        cut: InputAudio | OutputText = InputAudio()  # the transcript no longer matches: dropped, as OpenAI does
    elif isinstance(part, OutputText):
        if text_end is None:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                "Aural replies in text: say how much of it was spoken with `text_end` (characters kept).",
                param="text_end",
            )
        if text_end > len(part.text):
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"text_end {text_end} is past the end of the text ({len(part.text)}).",
                param="text_end",
            )
        cut = OutputText(text=part.text[:text_end])
    else:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE, "Only input_audio and output_text parts can be truncated.", param="content_index"
        )
    content = [*item.content[:content_index], cut, *item.content[content_index + 1 :]]
    return StoredItem(item.model_copy(update={"content": content}, deep=True), audio)
