"""The conversation state machine, with no I/O: one input in, a `Step` of server events and commands out.

Sans-I/O in the manner of python-websockets' protocol core: `receive()` takes one input (`inputs.py`: a
client event, a binary frame of audio, speech probabilities, the engine's progress on a response or a
transcription, a server tool's output) and returns what to send and what the driver must do
(`commands.py`), each in order. Bad input becomes an `error` event and never changes the conversation.

`ConversationSession` is the router: it owns the configuration, the conversation's items and the order
in which things happen, and it alone acts across the sub-machines, which own their own state and return
what they want done: the input audio (`input_audio`), turn taking (`turn_taking`), the running response
(`responses`) and server tools' rounds (`tool_rounds`). With server VAD the session takes turns: it
commits the user's speech when it ends, answers it, cancels a response the user talks over (the assistant
item keeps exactly the text already sent), and asks the engine to read the turn while the user is still
talking or falling silent.

The session holds decoded samples only. Audio bytes go to the driver's ingest stage (`DecodeAudio`,
`DecodeClips`), which decodes them off the event loop and answers before the next client event; an
event that needs the input stream ended first (a commit, a clear, a change of format) or audio blobs
decoded (an item, a response's input) asks for that and is handled again when the answer brings it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import assert_never

from aural.protocols import client_events as ce
from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import (
    AudioFormat,
    AudioInputConfig,
    FunctionCallOutputItem,
    FunctionTool,
    InputAudio,
    InputItem,
    Item,
    ItemReference,
    MessageItem,
    ResponseParams,
    SemanticVad,
    SessionConfig,
)
from aural.protocols.server_events import new_id

from ..engine.base import SAMPLE_RATE, AudioPart, AudioSamples, Message, ModelCapabilities
from ..errors import AudioError
from .commands import CheckSchemas, DecodeClips, DetectSpeech, EndAudio, Prefill, Step, StopPrefill, emit, order
from .config import engine_truncation, initial_config, max_tokens_for, updated_config
from .edits import audio_clips, b64decode, client_item, truncated
from .input_audio import MIN_AUDIO, NO_CLIPS, ClipDecoder, Decoded, InputBuffer
from .inputs import (
    AudioDecoded,
    AudioEnded,
    AudioFrame,
    ClientSent,
    ClipsDecoded,
    Generated,
    Input,
    Opened,
    SchemasChecked,
    ShuttingDown,
    SpeechScored,
    ToolReturned,
    Transcribed,
)
from .items import Conversation, ConversationBounds, StoredItem, added, public
from .response_run import ResponseRun
from .responses import Responses, with_instructions
from .snapshot import Snapshot
from .tool_calls import SchemaVerdicts, tools_for
from .tool_rounds import ToolRounds
from .transcription import Transcriptions
from .turn_taking import (
    PER_MS,
    Forget,
    IdleTimedOut,
    ReadAhead,
    ReadAheadStale,
    SpeechBegan,
    SpeechEnded,
    TurnTaking,
)
from .wire_errors import failure_event


class ConversationSession:
    """One realtime session: its configuration, input audio, conversation and response.

    Args:
        model: the model name echoed in the session object.
        capabilities: what the session must know of the model: its audio clip, its context window (reported
            in `rate_limits.updated` after each response, so that clients see how full the conversation is)
            and which tool schemas it can enforce.
        max_buffer_seconds: the input audio buffer's bound (the ingest stage's too: `max_samples`).
        bounds: what the conversation may hold (`ConversationBounds`' defaults when None).
        server_tools: the definitions of the functions the runtime runs itself (already checked): offered to
            the model on every in-conversation response besides the client's `tools`, which
            `session.created/updated` list alone, and never named in an error; a client tool of a server tool's
            name hides it, and a client cannot force one by name (`tool_choice`).
        max_tool_rounds: rounds of server tool calls answered and continued in a row before the continuation
            must answer (`tool_choice` "none").
        pinned: a configuration the session starts with (a client secret's, already checked), applied as a
            `session.update` would be before `session.created`; the client may still update it.
        restored: a conversation to take over (`snapshot.py`): its ids, configuration and items, in place of a new
            one's (`model` and `pinned` are then ignored).
    """

    def __init__(
        self,
        model: str,
        capabilities: ModelCapabilities,
        *,
        max_buffer_seconds: float = 15 * 60,
        bounds: ConversationBounds | None = None,
        server_tools: Sequence[FunctionTool] = (),
        max_tool_rounds: int = 8,
        pinned: SessionConfig | None = None,
        restored: Snapshot | None = None,
    ) -> None:
        self.capabilities = capabilities
        self._verdicts = SchemaVerdicts(capabilities.check_schema)
        self._model = replace(capabilities, check_schema=self._verdicts)  # tools checked by lookups
        self.id = restored.session_id if restored else new_id("sess")
        self.conversation_id = restored.conversation_id if restored else new_id("conv")
        self.config = restored.config.model_copy(deep=True) if restored else initial_config(self.id, model)
        self.items = Conversation(bounds)
        for stored in restored.items if restored else ():  # copies: items change in place (transcripts, turns)
            self.items.insert(StoredItem(public(stored.item), dict(stored.audio), stored.turn))
        self.max_samples = int(max_buffer_seconds * SAMPLE_RATE)
        self._audio = InputBuffer(self.max_samples)
        self._turns: TurnTaking | None = None
        self._streams = 0  # detection streams started
        self._respond_after = False  # server VAD committed a turn while a response was running
        self._transcriptions = Transcriptions(self.items)
        self._server_tools = tuple(server_tools)
        self._responses = Responses(self.items, capabilities.context_window, self.conversation_id)
        self._rounds = ToolRounds([tool.name for tool in server_tools], max_tool_rounds)
        self._shutting_down = False
        if pinned is not None and restored is None:
            self.config = updated_config(self.config, ce.SessionUpdate(session=pinned), self._model)
        if pinned is not None or restored is not None:
            self._restart_turn_taking()

    @property
    def response(self) -> ResponseRun | None:
        """The response being generated, if any."""
        return self._responses.running

    @property
    def busy(self) -> bool:
        """Whether a response or a round of server tool calls runs: work the client waits for, so that the
        connection is not idle, and a server that drains waits for it."""
        return self.response is not None or self._rounds.holds(None)

    def receive(self, received: Input) -> Step:
        """Take one input; returns the events to send and the commands to carry out, in order."""
        match received:
            case ClientSent(event):
                return self._guarded(event, Decoded())
            case AudioFrame(data):  # like `input_audio_buffer.append`, without an event to name
                return order(self._audio.feed(data, self._format, None))
            case AudioDecoded(samples, error, event_id):
                return self._decoded(samples, error, event_id)
            case AudioEnded(samples, error, resume):
                return self._guarded(resume, Decoded(ended=self._audio.ended(samples) or error))
            case ClipsDecoded(clips, resume):
                return self._guarded(resume, Decoded(clips=clips))
            case SchemasChecked(verdicts, resume):
                self._verdicts.learn(verdicts)
                return self._guarded(resume, Decoded())
            case SpeechScored(stream, probabilities):
                return self._speech(stream, probabilities)
            case Generated(response_id, event):
                step, finished = self._responses.progress(response_id, event)
                return step + self._after(finished) if finished is not None else step
            case Transcribed(item_id, index, event):
                return self._transcriptions.progress(item_id, index, event)
            case ToolReturned(call_id, output):
                return self._tool_returned(call_id, output)
            case Opened():
                return emit(se.SessionCreated(session=self.config.model_copy(deep=True)))
            case ShuttingDown():
                self._shutting_down = True
                return self._responses.cancel("server_shutdown") + self._rounds.cancel()
            case _:
                assert_never(received)

    @property
    def _input(self) -> AudioInputConfig:
        assert self.config.audio and self.config.audio.input
        return self.config.audio.input

    @property
    def _format(self) -> AudioFormat:
        assert self._input.format is not None
        return self._input.format

    # --- client events -----------------------------------------------------------------------------

    def _guarded(self, event: ce.ClientEvent, answer: Decoded) -> Step:
        """Apply one client event; the error it raises becomes an `error` event naming it."""
        try:
            return self._client_event(event, answer)
        except (ProtocolError, AudioError) as exc:
            return emit(failure_event(exc, event.event_id))

    def _client_event(self, event: ce.ClientEvent, answer: Decoded) -> Step:
        if schemas := self._verdicts.missing(event, self.config):  # checked off the loop first
            return order(CheckSchemas(schemas, event))
        if answer.clips is None and (clips := audio_clips(event)):  # decoded off the loop first
            return order(DecodeClips(clips, self._format, event))
        match event:
            case ce.SessionUpdate():
                return self._session_update(event, answer.ended)
            case ce.InputAudioBufferAppend():
                return order(self._audio.feed(b64decode(event.audio, "audio"), self._format, event.event_id))
            case ce.InputAudioBufferCommit():
                return self._audio_ended_for(event) or self._commit(answer.ended)
            case ce.InputAudioBufferClear():
                return self._audio_ended_for(event) or self._clear(answer.ended)
            case ce.ConversationItemCreate():
                return self._add_item(event.item, event.previous_item_id, answer.decoder(self.max_samples))
            case ce.ConversationItemDelete():
                self.items.delete(event.item_id)
                return emit(se.ConversationItemDeleted(item_id=event.item_id))
            case ce.ConversationItemRetrieve():
                return emit(se.ConversationItemRetrieved(item=public(self.items.get(event.item_id).item)))
            case ce.ConversationItemTruncate():
                return self._truncate(event)
            case ce.ResponseCreate():
                return self._create_response(event.response or ResponseParams(), answer.decoder(self.max_samples))
            case ce.ResponseCancel():
                return self._cancel(event.response_id)
            case _:
                assert_never(event)

    def _audio_ended_for(self, event: ce.ClientEvent) -> Step | None:
        """The command that ends the input stream before `event` is handled again, while a stream is open."""
        return order(EndAudio(event)) if self._audio.streaming else None

    def _session_update(self, event: ce.SessionUpdate, ended: AudioError | ProtocolError | None) -> Step:
        """Apply the fields present; an update that fails a check changes nothing. Audio sent so far was in the
        old format: a new format ends its stream first (`ended`: why its last bytes did not decode)."""
        config = updated_config(self.config, event, self._model)
        previous = self._input
        assert config.audio and config.audio.input
        if config.audio.input.format != previous.format and (ending := self._audio_ended_for(event)):
            return ending
        self.config = config
        step = emit(failure_event(ended, None)) if ended is not None else Step()
        if self._input.turn_detection != previous.turn_detection:
            self._restart_turn_taking()
        return step + emit(se.SessionUpdated(session=self.config.model_copy(deep=True)))

    def _restart_turn_taking(self) -> None:
        settings = self._input.turn_detection
        assert not isinstance(settings, SemanticVad)
        self._turns = None
        if settings is not None:
            self._streams += 1
            self._turns = TurnTaking(settings, self._streams, self._audio.end, self.capabilities.clip_samples)

    # --- input audio buffer ------------------------------------------------------------------------

    def _decoded(self, samples: AudioSamples, error: AudioError | None, event_id: str | None) -> Step:
        """The ingest stage decoded appended audio: keep it and run voice activity detection over it."""
        try:
            self._audio.decoded(samples, error)
        except (ProtocolError, AudioError) as exc:
            return emit(failure_event(exc, event_id))
        if self._turns is None or not samples.size:
            return Step()
        return order(DetectSpeech(self._turns.stream, samples))

    def _commit(self, ended: AudioError | ProtocolError | None) -> Step:
        if ended is not None:
            raise ended
        self.items.check_room(self._audio.size, 0)
        audio = self._audio.take_all()
        item_id = self._turns.item_id if self._turns and self._turns.item_id else new_id("item")
        if self._turns is not None:
            self._turns.restart()
        return self._commit_audio(audio, item_id)

    def _commit_audio(self, audio: AudioSamples, item_id: str) -> Step:
        item = MessageItem(id=item_id, role="user", status="completed", content=[InputAudio()])
        stored = StoredItem(item, {0: audio})
        previous = self.items.insert(stored)
        committed = emit(
            se.InputAudioBufferCommitted(item_id=stored.id, previous_item_id=previous), *added(stored, previous)
        )
        return committed + self._transcriptions.start(self._input.transcription, stored.id, 0, audio)

    def _clear(self, ended: AudioError | ProtocolError | None) -> Step:
        self._audio.discard_before(self._audio.end)
        if self._turns is not None:
            self._turns.restart()
        if ended is not None:
            raise ended
        return emit(se.InputAudioBufferCleared())

    # --- server VAD --------------------------------------------------------------------------------

    def _speech(self, stream: int, probabilities: Sequence[float]) -> Step:
        """Act on what the speech probabilities of detection stream `stream` ask for (stale streams are ignored)."""
        turns = self._turns
        if turns is None or turns.stream != stream:
            return Step()
        step = Step()
        intents = turns.hear(probabilities, buffer_start=self._audio.start, responding=self.response is not None)
        for intent in intents:
            match intent:
                case SpeechBegan(item_id, start, interrupt):
                    step += emit(se.InputAudioBufferSpeechStarted(audio_start_ms=start // PER_MS, item_id=item_id))
                    if interrupt and self.response is not None and self.response.in_conversation:
                        step += self._responses.cancel("turn_detected")
                    if interrupt:
                        step += self._rounds.cancel()
                case ReadAhead(item_id, start, end):
                    step += self._read_ahead(item_id, self._audio.peek(start, end))
                case ReadAheadStale():
                    step += order(StopPrefill())
                case SpeechEnded(item_id, start, end, respond):
                    step += emit(se.InputAudioBufferSpeechStopped(audio_end_ms=end // PER_MS, item_id=item_id))
                    audio = self._audio.take(start, end)
                    if audio.size >= MIN_AUDIO:
                        step += self._commit_audio(audio, item_id) + (self._respond_to_turn() if respond else Step())
                case IdleTimedOut(item_id, end):
                    start = self._audio.start
                    step += emit(
                        se.InputAudioBufferTimeoutTriggered(
                            audio_start_ms=start // PER_MS, audio_end_ms=end // PER_MS, item_id=item_id
                        )
                    )
                    audio = self._audio.take(start, end)
                    if audio.size >= MIN_AUDIO:
                        step += self._commit_audio(audio, item_id)
                    step += self._server_response(ResponseParams())
                case Forget(position):
                    self._audio.discard_before(position)
        return step

    def _respond_to_turn(self) -> Step:
        if self.response is None:
            return self._server_response(ResponseParams())
        self._respond_after = True  # after the running response (cancelled, or left to finish)
        return Step()

    def _read_ahead(self, item_id: str, audio: AudioSamples) -> Step:
        """Ask the engine to read the turn so far, as the reply to it would see it (not while a response runs)."""
        if self.response is not None or audio.size < MIN_AUDIO:
            return Step()
        user = Message("user", (AudioPart(f"{item_id}/0", audio),), key=item_id)
        conversation = with_instructions([*self.items.messages(), user], self.config.instructions)
        try:
            tools = tools_for(ResponseParams(), self.config, self._server_tools, self._verdicts)
        except ProtocolError:  # a tool_choice that the response will refuse: it will read nothing
            return Step()
        truncation = engine_truncation(self.config.truncation)
        return order(Prefill(conversation, tools.functions if tools else (), truncation))

    # --- conversation items ------------------------------------------------------------------------

    def _add_item(self, item: Item, previous_item_id: str | None, decoded: ClipDecoder) -> Step:
        """Add an item after `previous_item_id` (None: at the end), as `conversation.item.create` does.

        Raises:
            ProtocolError: an invalid item, a call output whose `call_id` no call in the conversation
                has, a function call whose `call_id` is taken, or no item `previous_item_id`.
        """
        self.items.check_calls(item)
        stored = client_item(item, "item", decoded)
        self.items.check_room(*stored.size(), param="item")
        return emit(*added(stored, self.items.insert(stored, previous_item_id)))

    def _truncate(self, event: ce.ConversationItemTruncate) -> Step:
        stored = self.items.get(event.item_id)
        if self.response is not None and self.response.item_id == stored.id:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                "This item's response is still in progress: cancel it or wait for response.done first.",
                param="item_id",
            )
        self.items.replace(truncated(stored, event.content_index, event.audio_end_ms, event.text_end))
        return emit(
            se.ConversationItemTruncated(
                item_id=event.item_id, content_index=event.content_index, audio_end_ms=event.audio_end_ms
            )
        )

    # --- responses ---------------------------------------------------------------------------------

    def _create_response(self, params: ResponseParams, decoded: ClipDecoder = NO_CLIPS, depth: int = 0) -> Step:
        """Start a response, as `response.create` does (`depth`: server tool rounds continued before it).

        Raises:
            ProtocolError: a response is already running, the server is shutting down, or `params` are invalid.
        """
        if self._shutting_down:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, "The server is shutting down; reconnect to go on.")
        if self.response is not None:
            raise ProtocolError(
                ErrorCode.RESPONSE_ACTIVE,
                f"Conversation already has an active response in progress: {self.response.id}. "
                "Wait until the response is finished before creating a new one.",
            )
        server = self._server_tools if params.conversation != "none" else ()
        tools = tools_for(params, self.config, server, self._verdicts)
        max_tokens = max_tokens_for(params, self.config)
        conversation = self._context(params.input, decoded) if params.input is not None else self.items.messages()
        return self._responses.begin(params, self.config, tools, max_tokens, conversation, depth)

    def _context(self, inputs: list[InputItem], decoded: ClipDecoder) -> list[Message]:
        messages = []
        for index, entry in enumerate(inputs):
            if isinstance(entry, ItemReference):
                messages.append(self.items.get(entry.id, param=f"response.input.{index}.id").to_message())
            else:
                messages.append(client_item(entry, f"response.input.{index}", decoded).to_message())
        return messages

    def _cancel(self, response_id: str | None) -> Step:
        """`response.cancel`: the running response, or else the server tools' calls still running."""
        run = self.response
        if run is None and self._rounds.holds(response_id):
            return self._rounds.cancel()
        if run is None or (response_id is not None and response_id != run.id):
            raise ProtocolError(
                ErrorCode.NO_ACTIVE_RESPONSE,
                "Cancellation failed: no active response found"
                + (f" with id '{response_id}'." if response_id else "."),
                param="response_id" if response_id else None,
            )
        return self._responses.cancel("client_cancelled")

    def _server_response(self, params: ResponseParams, depth: int = 0) -> Step:
        """A response the server starts (a turn server VAD ended, the idle timeout, a tool round's continuation):
        one it cannot start (the session's `tool_choice` names a function no longer among the tools, the server
        is shutting down) is an `error` event, with no client event to name."""
        try:
            return self._create_response(params, depth=depth)
        except ProtocolError as exc:
            return emit(failure_event(exc, None))

    def _after(self, run: ResponseRun) -> Step:
        """What follows a response the engine ended: its server tools' calls, the idle timer, a turn that waited."""
        step = Step()
        if run.response.status == "completed" and run.in_conversation:
            step += self._rounds.after(run)
        if self._turns is not None:
            self._turns.idle_from = self._turns.position
        if self._respond_after and not self._shutting_down:
            self._respond_after = False
            step += self._server_response(ResponseParams())
        return step

    def _tool_returned(self, call_id: str, output: str) -> Step:
        """A server tool's output joins the conversation after the others; the last output of a response's server
        calls starts the continuation (unless a response runs already)."""
        wanted, follow_up = self._rounds.returned(call_id)
        if not wanted:  # cancelled meanwhile
            return Step()
        try:
            step = self._add_item(FunctionCallOutputItem(call_id=call_id, output=output), None, NO_CLIPS)
        except ProtocolError:  # the client deleted the call meanwhile
            step = Step()
        if follow_up is None or self.response is not None:
            return step
        return step + self._server_response(follow_up.params, follow_up.depth)
