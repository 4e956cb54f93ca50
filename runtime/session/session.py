"""The conversation state machine, with no I/O: client events in, server events and engine commands out.

Sans-IO in the manner of python-websockets' protocol core: `handle()` takes a decoded client event and
returns, in order, the server events to send and the commands the driver must carry out on the
engine. The driver reports the engine's progress back through `on_delta()`, `on_tool_call()` and
`on_done()`. Bad input becomes an `error` event and never changes the conversation. `add_item()` and
`create_response()` are what a client's events do, open to the runtime too (a function run inside the
runtime answers its call with `add_item()` and continues with `create_response()`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from aural.protocols import client_events as ce
from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import (
    AudioConfig,
    AudioFormat,
    AudioInputConfig,
    ErrorDetail,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputAudio,
    InputItem,
    Item,
    ItemReference,
    MessageItem,
    PcmFormat,
    RateLimit,
    Response,
    ResponseParams,
    SessionConfig,
)
from aural.protocols.server_events import ServerEventBase, new_id

from ..engine.base import SAMPLE_RATE, AudioSamples, GenerationDone, Message, SamplingParams
from ..engine.tools import ToolCallDelta, ToolCallDone
from .items import Conversation, StoredItem
from .responses import ResponseRun
from .tool_calls import CallRun, check_tools, tool_use

MIN_COMMIT_MS = 100
MAX_OUTPUT_TOKENS = 4096


class AudioDecoder(Protocol):
    def feed(self, data: bytes) -> AudioSamples: ...

    def flush(self) -> AudioSamples: ...


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


Command = StartResponse | CancelResponse
Output = ServerEventBase | Command


def error_event(exc: ProtocolError) -> se.Error:
    """The `error` event for a protocol error."""
    detail = ErrorDetail(
        type=exc.error_type, code=exc.code.value, message=exc.message, param=exc.param, event_id=exc.event_id
    )
    return se.Error(error=detail)


class ConversationSession:
    """One realtime session: its configuration, input audio buffer, conversation and response.

    Args:
        model: the model name echoed in the session object.
        decoder_factory: makes a decoder for an input audio format.
        context_window: the model's context in tokens, reported in `rate_limits.updated` after each
            response so that clients see how full the conversation is.
        max_buffer_seconds: the input audio buffer's bound.
    """

    def __init__(
        self,
        model: str,
        decoder_factory: Callable[[AudioFormat], AudioDecoder],
        *,
        context_window: int = 8192,
        max_buffer_seconds: float = 15 * 60,
    ) -> None:
        self.context_window = context_window
        self.id = new_id("sess")
        self.conversation_id = new_id("conv")
        self.config = SessionConfig(
            id=self.id,
            object="realtime.session",
            model=model,
            output_modalities=["text"],
            audio=AudioConfig(input=AudioInputConfig(format=PcmFormat())),
            tools=[],
            tool_choice="auto",
            max_output_tokens="inf",
        )
        self.items = Conversation()
        self.response: ResponseRun | None = None
        self._decoder_factory = decoder_factory
        self._max_buffer = int(max_buffer_seconds * SAMPLE_RATE)
        self._buffer: list[AudioSamples] = []
        self._buffered = 0
        self._decoder = decoder_factory(self._format)
        self._handlers: dict[str, Callable[[Any], list[Output]]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self._item_create,
            "conversation.item.delete": self._item_delete,
            "conversation.item.retrieve": self._item_retrieve,
            "conversation.item.truncate": self._item_truncate,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
        }

    @property
    def _format(self) -> AudioFormat:
        assert self.config.audio and self.config.audio.input and self.config.audio.input.format
        return self.config.audio.input.format

    def start(self) -> list[Output]:
        """The events that open the session."""
        return [se.SessionCreated(session=self.config.model_copy(deep=True))]

    def handle(self, event: ce.ClientEvent) -> list[Output]:
        """Apply one client event; a `ProtocolError` it raises becomes an `error` event."""
        try:
            return self._handlers[event.type](event)
        except ProtocolError as exc:
            exc.event_id = exc.event_id or event.event_id
            return [error_event(exc)]

    # --- session ----------------------------------------------------------------------------------

    def _session_update(self, event: ce.SessionUpdate) -> list[Output]:
        """Apply the fields present; an update that fails a check changes nothing."""
        update, out = event.session, []
        config = self.config.model_copy(deep=True)
        fields = ("instructions", "max_output_tokens", "temperature", "top_p", "tools", "tool_choice")
        for name in (*fields, "parallel_tool_calls"):
            if name in update.model_fields_set:
                setattr(config, name, getattr(update, name))
        _check_max_tokens(config.max_output_tokens, "session.max_output_tokens")
        check_tools(config.tools or [], config.tool_choice, "session")
        audio_in = update.audio.input if update.audio else None
        if audio_in is not None:
            assert config.audio and config.audio.input
            if audio_in.format is not None:
                config.audio.input.format = audio_in.format
            if audio_in.transcription is not None:
                config.audio.input.transcription = audio_in.transcription
            if audio_in.turn_detection is not None:
                message = (
                    f"Turn detection '{audio_in.turn_detection.type}' is not supported yet: commit the input audio "
                    "buffer with input_audio_buffer.commit. turn_detection stays null."
                )
                param = "session.audio.input.turn_detection"
                error = ProtocolError(ErrorCode.UNSUPPORTED, message, param=param, event_id=event.event_id)
                out.append(error_event(error))
        previous_format = self._format
        self.config = config
        if self._format != previous_format:  # audio sent so far was in the old format: decode it to the end
            self._buffer_samples(self._decoder.flush())
            self._decoder = self._decoder_factory(self._format)
        return [*out, se.SessionUpdated(session=self.config.model_copy(deep=True))]

    # --- input audio buffer ------------------------------------------------------------------------

    def _buffer_samples(self, samples: AudioSamples) -> None:
        if samples.size:
            self._buffer.append(samples)
            self._buffered += samples.size

    def _append(self, event: ce.InputAudioBufferAppend) -> list[Output]:
        data = _b64decode(event.audio, "audio")
        samples = self._decoder.feed(data)
        if self._buffered + samples.size > self._max_buffer:
            raise ProtocolError(
                ErrorCode.BUFFER_FULL,
                f"The input audio buffer holds at most {self._max_buffer // SAMPLE_RATE} s: commit or clear it.",
                param="audio",
            )
        self._buffer_samples(samples)
        return []

    def _take_buffer(self) -> AudioSamples:
        self._buffer_samples(self._decoder.flush())
        audio = np.concatenate(self._buffer) if self._buffer else np.zeros(0, dtype=np.float32)
        self._buffer, self._buffered = [], 0
        self._decoder = self._decoder_factory(self._format)
        return audio

    def _commit(self, event: ce.InputAudioBufferCommit) -> list[Output]:
        pending = self._buffered
        audio = self._take_buffer()
        if audio.size < MIN_COMMIT_MS * SAMPLE_RATE // 1000:
            if audio.size:  # keep what was there: committing too little must not lose it
                self._buffer, self._buffered = [audio], audio.size
            raise ProtocolError(
                ErrorCode.BUFFER_EMPTY,
                f"Error committing input audio buffer: expected at least {MIN_COMMIT_MS} ms of audio, "
                f"but the buffer holds {1000 * max(pending, audio.size) / SAMPLE_RATE:.2f} ms.",
            )
        item = MessageItem(id=new_id("item"), role="user", status="completed", content=[InputAudio()])
        stored = StoredItem(item, {0: audio})
        previous = self.items.insert(stored)
        return [
            se.InputAudioBufferCommitted(item_id=stored.id, previous_item_id=previous),
            *self._item_added(stored, previous),
        ]

    def _clear(self, event: ce.InputAudioBufferClear) -> list[Output]:
        self._take_buffer()
        return [se.InputAudioBufferCleared()]

    # --- conversation items ------------------------------------------------------------------------

    def _item_added(self, stored: StoredItem, previous: str | None) -> list[Output]:
        item = _public(stored.item)
        return [
            se.ConversationItemAdded(item=item, previous_item_id=previous),
            se.ConversationItemDone(item=item, previous_item_id=previous),
        ]

    def _stored(self, item: Item, param: str) -> StoredItem:
        """Validate a client-made item and decode its audio."""
        if isinstance(item, FunctionCallItem | FunctionCallOutputItem):
            item = item.model_copy(update={"id": item.id or new_id("item"), "status": "completed"})
            return StoredItem(item)
        allowed = {
            "user": ("input_text", "input_audio"),
            "system": ("input_text",),
            "assistant": ("output_text",),
        }
        audio: dict[int, AudioSamples] = {}
        content = []
        for index, part in enumerate(item.content):
            if part.type not in allowed[item.role]:
                raise ProtocolError(
                    ErrorCode.INVALID_VALUE,
                    f"A {item.role} message cannot hold '{part.type}' content.",
                    param=f"{param}.content.{index}.type",
                )
            if isinstance(part, InputAudio):
                if not part.audio:
                    raise ProtocolError(
                        ErrorCode.INVALID_VALUE,
                        "input_audio needs 'audio'.",
                        param=f"{param}.content.{index}.audio",
                    )
                decoder = self._decoder_factory(self._format)
                data = _b64decode(part.audio, f"{param}.content.{index}.audio")
                samples = np.concatenate([decoder.feed(data), decoder.flush()])
                if samples.size < MIN_COMMIT_MS * SAMPLE_RATE // 1000:
                    raise ProtocolError(
                        ErrorCode.BAD_AUDIO,
                        f"Audio content must hold at least {MIN_COMMIT_MS} ms.",
                        param=f"{param}.content.{index}.audio",
                    )
                audio[index] = samples
                part = InputAudio(transcript=part.transcript)
            content.append(part)
        stored_item = MessageItem(id=item.id or new_id("item"), role=item.role, status="completed", content=content)
        return StoredItem(stored_item, audio)

    def _item_create(self, event: ce.ConversationItemCreate) -> list[Output]:
        return self.add_item(event.item, event.previous_item_id)

    def add_item(self, item: Item, previous_item_id: str | None = None) -> list[Output]:
        """Add an item after `previous_item_id` (None: at the end), as `conversation.item.create` does.

        Raises:
            ProtocolError: an invalid item, a call output whose `call_id` no call in the conversation
                has, a function call whose `call_id` is taken, or no item `previous_item_id`.
        """
        if isinstance(item, FunctionCallOutputItem) and self.items.find_call(item.call_id) is None:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"No function call with call_id '{item.call_id}' in the conversation.",
                param="item.call_id",
            )
        if isinstance(item, FunctionCallItem) and self.items.find_call(item.call_id) is not None:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE, f"call_id '{item.call_id}' is already used.", param="item.call_id"
            )
        stored = self._stored(item, "item")
        previous = self.items.insert(stored, previous_item_id)
        return self._item_added(stored, previous)

    def _item_delete(self, event: ce.ConversationItemDelete) -> list[Output]:
        self.items.delete(event.item_id)
        return [se.ConversationItemDeleted(item_id=event.item_id)]

    def _item_retrieve(self, event: ce.ConversationItemRetrieve) -> list[Output]:
        return [se.ConversationItemRetrieved(item=_public(self.items.get(event.item_id).item))]

    def _item_truncate(self, event: ce.ConversationItemTruncate) -> list[Output]:
        self.items.get(event.item_id)
        raise ProtocolError(ErrorCode.UNSUPPORTED, "conversation.item.truncate is not supported yet.", param="item_id")

    # --- responses ---------------------------------------------------------------------------------

    def _response_create(self, event: ce.ResponseCreate) -> list[Output]:
        return self.create_response(event.response or ResponseParams())

    def create_response(self, params: ResponseParams) -> list[Output]:
        """Start a response, as `response.create` does.

        Raises:
            ProtocolError: a response is already running, or `params` are invalid.
        """
        if self.response is not None:
            raise ProtocolError(
                ErrorCode.RESPONSE_ACTIVE,
                f"Conversation already has an active response in progress: {self.response.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        tools = params.tools if params.tools is not None else self.config.tools or []
        choice = params.tool_choice if params.tool_choice is not None else self.config.tool_choice
        if params.tools is not None or params.tool_choice is not None:
            check_tools(tools, choice, "response")
        parallel = params.parallel_tool_calls
        max_tokens = params.max_output_tokens if params.max_output_tokens is not None else self.config.max_output_tokens
        _check_max_tokens(max_tokens, "response.max_output_tokens")
        in_conversation = params.conversation != "none"
        conversation = self._context(params.input) if params.input is not None else self.items.messages()
        instructions = params.instructions if params.instructions is not None else self.config.instructions
        if instructions:
            conversation.insert(0, Message("system", (instructions,), key=f"instructions:{instructions}"))
        temperature = params.temperature if params.temperature is not None else self.config.temperature
        top_p = params.top_p if params.top_p is not None else self.config.top_p
        sampling = SamplingParams(
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            temperature=temperature or 0.0,
            top_p=top_p or 1.0,
            tools=tool_use(tools, choice, parallel if parallel is not None else self.config.parallel_tool_calls),
        )
        response = Response(
            id=new_id("resp"),
            conversation_id=self.conversation_id if in_conversation else None,
            max_output_tokens=max_tokens,
            metadata=params.metadata,
        )
        self.response = ResponseRun(response, in_conversation, item_id=new_id("item"))
        start = StartResponse(response.id, self.response.item_id, conversation, sampling, in_conversation)
        return [self.response.created(), start]

    def _context(self, inputs: list[InputItem]) -> list[Message]:
        messages = []
        for index, entry in enumerate(inputs):
            if isinstance(entry, ItemReference):
                messages.append(self.items.get(entry.id, param=f"response.input.{index}.id").to_message())
            else:
                messages.append(self._stored(entry, f"response.input.{index}").to_message())
        return messages

    def _response_cancel(self, event: ce.ResponseCancel) -> list[Output]:
        run = self.response
        if run is None or (event.response_id is not None and event.response_id != run.id):
            raise ProtocolError(
                ErrorCode.NO_ACTIVE_RESPONSE,
                "Cancellation failed: no active response found"
                + (f" with id '{event.response_id}'." if event.response_id else "."),
                param="response_id" if event.response_id else None,
            )
        if run.cancel_reason is not None:
            return []
        run.cancel_reason = "client_cancelled"
        return [CancelResponse(run.id)]

    def on_delta(self, response_id: str, text: str) -> list[Output]:
        """The engine produced text for the running response."""
        run = self.response
        if run is None or run.id != response_id or not text:
            return []
        opening = run.item is None
        events: list[Output] = list(run.delta(text, self.items.last_id()))
        if opening and run.in_conversation:
            self.items.insert(StoredItem(_public(run.item), turn=run.item_id))
        return events

    def on_tool_call(self, response_id: str, event: ToolCallDelta | ToolCallDone) -> list[Output]:
        """The engine went on with a function call of the running response."""
        run = self.response
        if run is None or run.id != response_id:
            return []
        events: list[Output] = []
        call = run.calls.get(event.index)
        if call is None:
            events += run.close_message(completed=True)
            if run.item is not None and run.in_conversation:
                self.items.replace(StoredItem(_public(run.item), turn=run.item_id))
            call, opened = CallRun.open(run.response, event.name, self.items.last_id(), run.in_conversation)
            run.calls[event.index] = call
            events += opened
            if run.in_conversation:
                self.items.insert(StoredItem(_public(call.item), turn=run.item_id))
        if isinstance(event, ToolCallDelta):
            return events + (call.delta(run.id, event.arguments) if event.arguments else [])
        events += call.finish(run.id, event.arguments, run.in_conversation)
        if run.in_conversation:
            self.items.replace(StoredItem(_public(call.item), turn=run.item_id))
        return events

    def on_done(self, response_id: str, result: GenerationDone) -> list[Output]:
        """The engine finished the running response (completed, cut, cancelled or failed)."""
        run = self.response
        if run is None or run.id != response_id:
            return []
        opening = run.item is None
        events: list[Output] = list(run.done(result, self.items.last_id()))
        self.response = None
        if run.item is not None and run.in_conversation:
            final = StoredItem(_public(run.item), turn=run.item_id)
            if opening:
                self.items.insert(final)
            else:
                self.items.replace(final)
        cut = [call for call in run.calls.values() if not call.done]
        for call in cut if run.in_conversation else []:
            self.items.delete(call.item_id, detach=False)  # the engine cut its tokens from the turn
        if cut and result.reason == "length":
            message = (
                f"The call of '{cut[0].item.name}' was cut off at the output token limit before it was complete, "
                "so it was dropped: raise max_output_tokens or simplify the function's parameters."
            )
            events.append(error_event(ProtocolError(ErrorCode.TOOL_CALL_INCOMPLETE, message)))
        if result.reason == "error" and result.error_code == ErrorCode.CONTEXT_EXCEEDED.value:
            message = result.error_message or "The conversation no longer fits the model's context."
            events.append(error_event(ProtocolError(ErrorCode.CONTEXT_EXCEEDED, message)))
        used = result.usage.input_tokens + result.usage.output_tokens
        if run.in_conversation and used:
            room = RateLimit(
                name="tokens",
                limit=self.context_window,
                remaining=max(0, self.context_window - used),
                reset_seconds=0.0,
            )
            events.append(se.RateLimitsUpdated(rate_limits=[room]))
        return events


def _public(item: Item | None) -> Item:
    """A copy of an item safe to send or keep: events must not share mutable state."""
    assert item is not None
    return item.model_copy(deep=True)


def _b64decode(data: str, param: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(ErrorCode.BAD_AUDIO, "Audio must be valid base64.", param=param) from None


def _check_max_tokens(value: object, param: str) -> None:
    if isinstance(value, int) and not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"max_output_tokens must be 'inf' or 1 to {MAX_OUTPUT_TOKENS}.",
            param=param,
        )
