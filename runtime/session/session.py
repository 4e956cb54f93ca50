"""The conversation state machine, with no I/O: client events in, server events and engine commands out.

Sans-IO in the manner of python-websockets' protocol core: `handle()` takes a decoded client event and
returns, in order, the server events to send and the commands (`commands.py`) the driver must carry
out. The driver reports back through `on_delta()`, `on_tool_call()` and `on_done()` (the response),
`on_speech()` (voice activity) and `on_transcript_delta()`/`on_transcript_done()`. Bad input becomes an
`error` event and never changes the conversation. `add_item()` and `create_response()` are what a
client's events do, open to the runtime too.

Server tools (functions the runtime runs itself) are offered to the model on every response in the
conversation besides the client's `tools`, which `session.created/updated` list alone; a client tool may
not take a server tool's name, and `tool_choice` may name one. When a completed response called server
tools, `RunTools` asks the driver to run them; each output reported to `on_tool_result()` joins the
conversation as a `function_call_output` item, and once all are in, the session continues with a new
response over the conversation, of the same parameters (`tool_choice` back to auto; after
`max_tool_rounds` such rounds in a row, "none", so that the model answers). A response that called
client tools too is not continued: the client continues after answering its own calls; nor is one
when a response already runs. `response.cancel` with no response running, and the user talking over
(server VAD), stop the server calls still running (`CancelTools`) and the continuation.

With server VAD the session also takes turns: it commits the user's speech when it ends, answers it,
cancels a response the user talks over (the assistant item keeps exactly the text already sent), and
asks the engine to read the turn while the user is still talking or falling silent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aural.protocols import client_events as ce
from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import (
    AudioConfig,
    AudioFormat,
    AudioInputConfig,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputAudio,
    InputItem,
    Item,
    ItemReference,
    MessageItem,
    PcmFormat,
    RateLimit,
    Response,
    ResponseParams,
    SemanticVad,
    SessionConfig,
)
from aural.protocols.server_events import new_id

from ..engine.base import (
    SAMPLE_RATE,
    AudioPart,
    AudioSamples,
    GenerationDone,
    Message,
    ModelCapabilities,
    SamplingParams,
    SchemaCheck,
    ToolCallDelta,
    ToolCallDone,
    ToolUse,
)
from ..errors import AudioError
from .commands import (
    CancelResponse,
    CancelTools,
    DetectSpeech,
    Output,
    Prefill,
    RunTools,
    StartResponse,
    error_event,
)
from .edits import MIN_AUDIO, MIN_AUDIO_MS, b64decode, client_item, truncated
from .input_buffer import DecoderFactory, InputBuffer
from .items import Conversation, StoredItem
from .responses import ResponseRun
from .tool_calls import CallRun, ToolRound, check_tools, tool_use
from .transcription import Transcriptions
from .turn_taking import Ending, Started, Stopped, TurnTaking, with_defaults
from .wire_errors import wire_code, wire_error

MAX_OUTPUT_TOKENS = 4096
_PER_MS = SAMPLE_RATE // 1000


class ConversationSession:
    """One realtime session: its configuration, input audio buffer, conversation and response.

    Args:
        model: the model name echoed in the session object.
        decoder_factory: makes a decoder for an input audio format.
        capabilities: what the session must know of the model: its audio clip, its context window (reported
            in `rate_limits.updated` after each response, so that clients see how full the conversation is)
            and which tool schemas it can enforce.
        max_buffer_seconds: the input audio buffer's bound.
        server_tools: the definitions of the functions the runtime runs itself (already checked).
        max_tool_rounds: rounds of server tool calls the session answers and continues in a row before it
            asks the model for an answer (`tool_choice` "none").
    """

    def __init__(
        self,
        model: str,
        decoder_factory: DecoderFactory,
        capabilities: ModelCapabilities,
        *,
        max_buffer_seconds: float = 15 * 60,
        server_tools: Sequence[FunctionTool] = (),
        max_tool_rounds: int = 8,
    ) -> None:
        self.capabilities = capabilities
        self._max_tool_rounds = max_tool_rounds
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
        self._max_samples = int(max_buffer_seconds * SAMPLE_RATE)
        self._buffer = InputBuffer(decoder_factory, self._format, self._max_samples)
        self._turns: TurnTaking | None = None
        self._streams = 0  # detection streams started
        self._respond_after = False  # server VAD committed a turn while a response was running
        self._transcriptions = Transcriptions(self.items)
        self._server_tools = tuple(server_tools)
        self._params = ResponseParams()  # the running response's
        self._depth = 0  # server tool rounds answered and continued before the running response
        self._rounds: dict[str, ToolRound] = {}  # by response id
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
    def _input(self) -> AudioInputConfig:
        assert self.config.audio and self.config.audio.input
        return self.config.audio.input

    @property
    def _format(self) -> AudioFormat:
        assert self._input.format is not None
        return self._input.format

    @property
    def _check_schema(self) -> SchemaCheck:
        return self.capabilities.check_schema

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
        except AudioError as exc:
            return [error_event(wire_error(exc, event.event_id))]

    def close(self) -> None:
        """The connection ended: stop the input decoder."""
        self._buffer.close()

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
        check_tools(config.tools or [], config.tool_choice, "session", self._server_tools, self._check_schema)
        audio_in = update.audio.input if update.audio else None
        if audio_in is not None:
            assert config.audio and config.audio.input
            if audio_in.format is not None:
                config.audio.input.format = audio_in.format
            if "transcription" in audio_in.model_fields_set:
                config.audio.input.transcription = audio_in.transcription
            if "turn_detection" in audio_in.model_fields_set:
                detection = audio_in.turn_detection
                if isinstance(detection, SemanticVad):
                    message = "Turn detection 'semantic_vad' is not supported: use 'server_vad'. Left unchanged."
                    param = "session.audio.input.turn_detection.type"
                    error = ProtocolError(ErrorCode.UNSUPPORTED, message, param=param, event_id=event.event_id)
                    out.append(error_event(error))
                else:
                    config.audio.input.turn_detection = with_defaults(detection) if detection else None
        previous = self._input
        self.config = config
        if self._input.format != previous.format:  # audio sent so far was in the old format: decode it to the end
            try:
                self._buffer.end_stream(self._input.format)
            except AudioError as exc:
                out.append(error_event(wire_error(exc)))
        if self._input.turn_detection != previous.turn_detection:
            self._restart_turn_taking()
        return [*out, se.SessionUpdated(session=self.config.model_copy(deep=True))]

    def _restart_turn_taking(self) -> None:
        settings = self._input.turn_detection
        assert not isinstance(settings, SemanticVad)
        self._turns = None
        if settings is not None:
            self._streams += 1
            self._turns = TurnTaking(settings, self._streams, self._buffer.end)

    # --- input audio buffer ------------------------------------------------------------------------

    def append_audio(self, data: bytes) -> list[Output]:
        """Raw input audio in the session's format (a binary frame): like `input_audio_buffer.append`."""
        try:
            return self._append_bytes(data)
        except ProtocolError as exc:
            return [error_event(exc)]
        except AudioError as exc:
            return [error_event(wire_error(exc))]

    def _append(self, event: ce.InputAudioBufferAppend) -> list[Output]:
        return self._append_bytes(b64decode(event.audio, "audio"))

    def _append_bytes(self, data: bytes) -> list[Output]:
        samples = self._buffer.append(data)
        if self._turns is None or not samples.size:
            return []
        return [DetectSpeech(self._turns.stream, samples)]

    def _commit(self, event: ce.InputAudioBufferCommit) -> list[Output]:
        buffer = self._buffer
        buffer.end_stream()
        if buffer.size < MIN_AUDIO:  # too little is kept, not lost
            raise ProtocolError(
                ErrorCode.BUFFER_EMPTY,
                f"Error committing input audio buffer: expected at least {MIN_AUDIO_MS} ms of audio, "
                f"but the buffer holds {buffer.size / _PER_MS:.2f} ms.",
            )
        item_id = self._turns.item_id if self._turns and self._turns.item_id else new_id("item")
        audio = buffer.take(buffer.start, buffer.end)
        if self._turns is not None:
            self._turns.restart()
        return self._commit_audio(audio, item_id)

    def _commit_audio(self, audio: AudioSamples, item_id: str) -> list[Output]:
        item = MessageItem(id=item_id, role="user", status="completed", content=[InputAudio()])
        stored = StoredItem(item, {0: audio})
        previous = self.items.insert(stored)
        return [
            se.InputAudioBufferCommitted(item_id=stored.id, previous_item_id=previous),
            *self._item_added(stored, previous),
            *self._transcriptions.start(self._input.transcription, stored.id, 0, audio),
        ]

    def _clear(self, event: ce.InputAudioBufferClear) -> list[Output]:
        try:
            self._buffer.end_stream()
        finally:
            self._buffer.discard_before(self._buffer.end)
            if self._turns is not None:
                self._turns.restart()
        return [se.InputAudioBufferCleared()]

    # --- server VAD --------------------------------------------------------------------------------

    def on_speech(self, stream: int, probabilities: list[float]) -> list[Output]:
        """Speech probabilities of the next windows of detection stream `stream` (stale streams are ignored)."""
        turns = self._turns
        if turns is None or turns.stream != stream:
            return []
        out: list[Output] = []
        for change in turns.push(probabilities):
            if isinstance(change, Started):
                out += self._speech_started(turns, change.onset)
            elif isinstance(change, Ending):
                out += self._prefill_turn(turns, change.end)
            elif isinstance(change, Stopped):
                out += self._speech_stopped(turns, change.end)
        if turns.start is not None:
            out += self._prefill_clips(turns)
        else:
            out += self._idle_timeout(turns)
            self._buffer.discard_before(turns.position - max(turns.padding, MIN_AUDIO))
        return out

    def _speech_started(self, turns: TurnTaking, onset: int) -> list[Output]:
        start = max(self._buffer.start, onset - turns.padding)
        turns.begin(new_id("item"), start)
        assert turns.item_id is not None
        out: list[Output] = [se.InputAudioBufferSpeechStarted(audio_start_ms=start // _PER_MS, item_id=turns.item_id)]
        run = self.response
        if turns.settings.interrupt_response and run and run.in_conversation and run.cancel_reason is None:
            run.cancel_reason = "turn_detected"
            out.append(CancelResponse(run.id))
        if turns.settings.interrupt_response:
            out += self._cancel_tools()
        return out

    def _speech_stopped(self, turns: TurnTaking, end: int) -> list[Output]:
        item_id, start = turns.item_id, turns.start
        assert item_id is not None and start is not None
        turns.end()
        out: list[Output] = [se.InputAudioBufferSpeechStopped(audio_end_ms=end // _PER_MS, item_id=item_id)]
        audio = self._buffer.take(start, end)
        if audio.size < MIN_AUDIO:
            return out
        out += self._commit_audio(audio, item_id)
        if turns.settings.create_response:
            out += self._respond_to_turn()
        return out

    def _respond_to_turn(self) -> list[Output]:
        if self.response is None:
            return self.create_response(ResponseParams())
        self._respond_after = True  # after the running response (cancelled, or left to finish)
        return []

    def _idle_timeout(self, turns: TurnTaking) -> list[Output]:
        timeout = turns.settings.idle_timeout_ms
        if timeout is None or turns.idle_from is None or self.response is not None:
            return []
        if turns.position - turns.idle_from < timeout * _PER_MS:
            return []
        turns.idle_from = None
        item_id, start, end = new_id("item"), self._buffer.start, turns.position
        out: list[Output] = [
            se.InputAudioBufferTimeoutTriggered(
                audio_start_ms=start // _PER_MS, audio_end_ms=end // _PER_MS, item_id=item_id
            )
        ]
        audio = self._buffer.take(start, end)
        if audio.size >= MIN_AUDIO:
            out += self._commit_audio(audio, item_id)
        return out + self.create_response(ResponseParams())

    def _pending_turn(self, turns: TurnTaking, end: int) -> list[Message] | None:
        """The conversation a reply would see if the turn ended at `end`; None while a response runs."""
        if self.response is not None or turns.item_id is None or turns.start is None:
            return None
        audio = self._buffer.peek(turns.start, end)
        if audio.size < MIN_AUDIO:
            return None
        user = Message("user", (AudioPart(f"{turns.item_id}/0", audio),), key=turns.item_id)
        return self._with_instructions([*self.items.messages(), user], self.config.instructions)

    def _prefill_turn(self, turns: TurnTaking, end: int) -> list[Output]:
        conversation = self._pending_turn(turns, end)
        if not conversation:
            return []
        tools = self._tool_use(ResponseParams())
        return [Prefill(conversation, tools.functions if tools else ())]

    def _prefill_clips(self, turns: TurnTaking) -> list[Output]:
        assert turns.start is not None
        complete = (turns.position - turns.start) // self.capabilities.clip_samples
        if complete <= turns.clips:
            return []
        turns.clips = complete
        return self._prefill_turn(turns, turns.start + complete * self.capabilities.clip_samples)

    # --- input transcription -----------------------------------------------------------------------

    def on_transcript_delta(self, item_id: str, index: int, text: str) -> list[Output]:
        """The side pass transcribed more of an audio part."""
        return self._transcriptions.delta(item_id, index, text)

    def on_transcript_done(self, item_id: str, index: int, result: GenerationDone) -> list[Output]:
        """The side pass ended; a finished transcript is also kept in the item."""
        return self._transcriptions.done(item_id, index, result)

    # --- conversation items ------------------------------------------------------------------------

    def _item_added(self, stored: StoredItem, previous: str | None) -> list[Output]:
        item = _public(stored.item)
        return [
            se.ConversationItemAdded(item=item, previous_item_id=previous),
            se.ConversationItemDone(item=item, previous_item_id=previous),
        ]

    def _decode(self, data: bytes) -> AudioSamples:
        """Decode a whole audio blob of a client item in the session's input format."""
        buffer = InputBuffer(self._decoder_factory, self._format, self._max_samples)
        try:
            buffer.append(data)
            buffer.end_stream()
            return buffer.take(buffer.start, buffer.end)
        finally:
            buffer.close()

    def _stored(self, item: Item, param: str) -> StoredItem:
        return client_item(item, param, self._decode)

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
        stored = self.items.get(event.item_id)
        if self.response is not None and self.response.item_id == stored.id:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                "This item's response is still in progress: cancel it or wait for response.done first.",
                param="item_id",
            )
        self.items.replace(truncated(stored, event.content_index, event.audio_end_ms, event.text_end))
        return [
            se.ConversationItemTruncated(
                item_id=event.item_id, content_index=event.content_index, audio_end_ms=event.audio_end_ms
            )
        ]

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
        in_conversation = params.conversation != "none"
        tools = self._tool_use(params, in_conversation)
        max_tokens = params.max_output_tokens if params.max_output_tokens is not None else self.config.max_output_tokens
        _check_max_tokens(max_tokens, "response.max_output_tokens")
        conversation = self._context(params.input) if params.input is not None else self.items.messages()
        instructions = params.instructions if params.instructions is not None else self.config.instructions
        temperature = params.temperature if params.temperature is not None else self.config.temperature
        top_p = params.top_p if params.top_p is not None else self.config.top_p
        sampling = SamplingParams(
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            temperature=temperature or 0.0,
            top_p=top_p or 1.0,
            tools=tools,
        )
        response = Response(
            id=new_id("resp"),
            conversation_id=self.conversation_id if in_conversation else None,
            max_output_tokens=max_tokens,
            metadata=params.metadata,
        )
        self.response = ResponseRun(response, in_conversation, item_id=new_id("item"))
        self._params, self._depth = params, 0
        conversation = self._with_instructions(conversation, instructions)
        start = StartResponse(response.id, self.response.item_id, conversation, sampling, in_conversation)
        return [self.response.created(), start]

    def _tool_use(self, params: ResponseParams, in_conversation: bool = True) -> ToolUse | None:
        """The tools a response with `params` may call: the session's unless the response names its own, and
        the server's (only in the conversation, where their outputs go).

        Raises:
            ProtocolError: the response's tools or tool_choice are invalid.
        """
        tools = params.tools if params.tools is not None else self.config.tools or []
        choice = params.tool_choice if params.tool_choice is not None else self.config.tool_choice
        server = self._server_tools if in_conversation else ()
        if params.tools is not None or params.tool_choice is not None:
            check_tools(tools, choice, "response", server, self._check_schema)
        parallel = params.parallel_tool_calls
        parallel = parallel if parallel is not None else self.config.parallel_tool_calls
        return tool_use([*tools, *server], choice, parallel)

    @staticmethod
    def _with_instructions(conversation: list[Message], instructions: str | None) -> list[Message]:
        if not instructions:
            return conversation
        return [Message("system", (instructions,), key=f"instructions:{instructions}"), *conversation]

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
        if run is None and self._rounds and event.response_id in (None, *self._rounds):
            return self._cancel_tools()
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
        """The engine produced text for the running response. After a cancel nothing more is sent, so
        the assistant item holds exactly the text the client received."""
        run = self.response
        if run is None or run.id != response_id or not text or run.cancel_reason is not None:
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
        if result.error is not None and wire_code(result.error) is not ErrorCode.SERVER_ERROR:
            events.append(error_event(wire_error(result.error)))
        used = result.usage.input_tokens + result.usage.output_tokens
        if run.in_conversation and used:
            room = RateLimit(
                name="tokens",
                limit=self.capabilities.context_window,
                remaining=max(0, self.capabilities.context_window - used),
                reset_seconds=0.0,
            )
            events.append(se.RateLimitsUpdated(rate_limits=[room]))
        if result.reason == "stop" and run.in_conversation:
            events += self._run_server_tools(run)
        if self._turns is not None:
            self._turns.idle_from = self._turns.position
        if self._respond_after:
            self._respond_after = False
            events += self.create_response(ResponseParams())
        return events

    # --- server tools ------------------------------------------------------------------------------

    def _run_server_tools(self, run: ResponseRun) -> list[Output]:
        """The command to run the server tools' calls of a completed response, if it made any."""
        names = {tool.name for tool in self._server_tools}
        calls = [call.item for call in run.calls.values() if call.done]
        mine = tuple(call.model_copy(deep=True) for call in calls if call.name in names)
        if not mine:
            return []
        depth = self._depth + 1
        choice = "auto" if depth < self._max_tool_rounds else "none"
        follow_up = self._params.model_copy(update={"tool_choice": choice, "input": None})
        continued = follow_up if len(mine) == len(calls) else None
        self._rounds[run.id] = ToolRound({call.call_id for call in mine}, continued, depth)
        return [RunTools(run.id, mine)]

    def on_tool_result(self, call_id: str, output: str) -> list[Output]:
        """A server tool's call finished with `output`: it joins the conversation after the others, and the
        last output of a response's server calls starts the continuation (unless a response runs already)."""
        found = next((key for key, tool_round in self._rounds.items() if call_id in tool_round.waiting), None)
        if found is None:  # cancelled meanwhile
            return []
        tool_round = self._rounds[found]
        tool_round.waiting.discard(call_id)
        try:
            events = self.add_item(FunctionCallOutputItem(call_id=call_id, output=output))
        except ProtocolError:  # the client deleted the call meanwhile
            events = []
        if tool_round.waiting:
            return events
        del self._rounds[found]
        if tool_round.follow_up is None or self.response is not None:
            return events
        events += self.create_response(tool_round.follow_up)  # parameters already checked: it cannot fail
        self._depth = tool_round.depth
        return events

    def _cancel_tools(self) -> list[Output]:
        """Stop every server call still running; no continuation follows."""
        cancelled = tuple(self._rounds)
        self._rounds.clear()
        return [CancelTools(cancelled)] if cancelled else []


def _public(item: Item | None) -> Item:
    """A copy of an item safe to send or keep: events must not share mutable state."""
    assert item is not None
    return item.model_copy(deep=True)


def _check_max_tokens(value: object, param: str) -> None:
    if isinstance(value, int) and not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"max_output_tokens must be 'inf' or 1 to {MAX_OUTPUT_TOKENS}.",
            param=param,
        )
