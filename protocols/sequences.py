"""The reference event sequences of the protocol: what a client sends and, in order, what the server answers.

The end-to-end tests assert the server's part of each (`server_types`) on the real server with the tiny model,
and `reference.py` writes them into `docs/protocol.md`, so the documented order is the order that is sent.
A step `repeated` comes one or more times in a row (deltas); `rate_limits.updated`, which follows every
`response.done`, is left out. Steps of different `strand`s keep their order within their strand but may come
among each other's (a response being cancelled closes while the user's turn is taken).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Step:
    """One event of a sequence.

    Attributes:
        sender: who sends it.
        type: the event's `type`.
        note: what it carries that matters at this point.
        repeated: it comes once or more in a row.
        strand: the events it keeps its order among ("": the sequence's main line).
    """

    sender: Literal["client", "server"]
    type: str
    note: str = ""
    repeated: bool = False
    strand: str = ""


@dataclass(frozen=True)
class ReferenceSequence:
    """A named sequence, and the test that holds the server to it."""

    title: str
    description: str
    steps: tuple[Step, ...]
    test: str


def server_types(sequence: ReferenceSequence, strand: str = "") -> list[str]:
    """The server's event types of one strand in order, each repeated run counted once (as a test collapses
    what it read)."""
    return [step.type for step in sequence.steps if step.sender == "server" and step.strand == strand]


def _client(type_: str, note: str = "", *, repeated: bool = False) -> Step:
    return Step("client", type_, note, repeated)


def _server(type_: str, note: str = "", *, repeated: bool = False, strand: str = "") -> Step:
    return Step("server", type_, note, repeated, strand)


CANCELLED = "cancelled response"
"""The strand of `BARGE_IN` that closes the interrupted response."""


_USER_ITEM = (
    _server("conversation.item.added", "the user's message item, after `previous_item_id`"),
    _server("conversation.item.done", "the same item, complete"),
)
_TEXT_RESPONSE = (
    _server("response.created", "`response.id`; `metadata` echoed from `response.create`"),
    _server("response.output_item.added", "the assistant's message item, `in_progress`"),
    _server("conversation.item.added", "the same item, placed after the item before it"),
    _server("response.content_part.added", 'part `{"type": "text", "text": ""}`'),
    _server("response.output_text.delta", "the reply's text, piece by piece", repeated=True),
    _server("response.output_text.done", "`text`: the deltas joined"),
    _server("response.content_part.done", "the part with the whole text"),
    _server("response.output_item.done", "the item, `completed` or `incomplete`"),
    _server("conversation.item.done", "the same item"),
    _server("response.done", "`status`, `status_details`, `output`, `usage`"),
)

COMMITTED_TURN = ReferenceSequence(
    "A turn committed by the client",
    "Audio appended and committed by the client (`turn_detection: null`), then a response asked for.",
    (
        _client("input_audio_buffer.append", "base64 audio in the session's input format", repeated=True),
        _client("input_audio_buffer.commit"),
        _server("input_audio_buffer.committed", "`item_id` of the new user item, `previous_item_id`"),
        *_USER_ITEM,
        _client("response.create", "optional `response` settings; `metadata` is echoed"),
        *_TEXT_RESPONSE,
    ),
    "tests/e2e/test_wire_sequence.py",
)

TEXT_TURN = ReferenceSequence(
    "A text turn",
    "A user message added as an item, then a response asked for.",
    (
        _client("conversation.item.create", "a `message` item with `input_text` content"),
        *_USER_ITEM,
        _client("response.create"),
        *_TEXT_RESPONSE,
    ),
    "tests/e2e/test_wire_sequence.py",
)

SERVER_VAD_TURN = ReferenceSequence(
    "An audio turn with server VAD",
    "With `turn_detection: {type: server_vad}` the server finds the turn in the appended audio, commits it "
    "and, with `create_response` (the default), answers it.",
    (
        _client("input_audio_buffer.append", "audio, streamed as it is captured", repeated=True),
        _server("input_audio_buffer.speech_started", "`audio_start_ms` (onset minus the prefix padding), `item_id`"),
        _server("input_audio_buffer.speech_stopped", "`audio_end_ms`, the same `item_id`"),
        _server("input_audio_buffer.committed", "the same `item_id`"),
        *_USER_ITEM,
        *_TEXT_RESPONSE,
    ),
    "tests/e2e/test_turn_taking.py",
)

TOOL_CALL = ReferenceSequence(
    "A tool call",
    "With `tools` in the session, a response whose output is a `function_call` item; the client runs the call, "
    "adds a `function_call_output` item with the same `call_id`, and asks for the next response.",
    (
        _client("response.create", "e.g. `tool_choice: {type: function, name}`"),
        _server("response.created"),
        _server("response.output_item.added", "a `function_call` item: `call_id`, `name`, empty `arguments`"),
        _server("conversation.item.added", "the same item"),
        _server("response.function_call_arguments.delta", "the arguments' JSON, piece by piece", repeated=True),
        _server("response.function_call_arguments.done", "`call_id`, `name`, `arguments`"),
        _server("response.output_item.done", "the item with its `arguments`"),
        _server("conversation.item.done", "the same item"),
        _server("response.done", "`output`: the call"),
        _client("conversation.item.create", "a `function_call_output` item: `call_id`, `output`"),
        _server("conversation.item.added"),
        _server("conversation.item.done"),
        _client("response.create", "the answer, which reads the output"),
        *_TEXT_RESPONSE,
    ),
    "tests/e2e/test_tool_calls.py",
)

BARGE_IN = ReferenceSequence(
    "Barge-in",
    "With server VAD and `interrupt_response` (the default), speech while a response streams cancels it: the "
    "response is closed with what was already sent (the steps marked *cancelled response*, in their order), while "
    "the user's turn is taken and then answered as any other (its first events may come among the closing ones).",
    (
        _server("response.output_text.delta", "a response streaming", repeated=True, strand=CANCELLED),
        _client("input_audio_buffer.append", "the user starts talking", repeated=True),
        _server("input_audio_buffer.speech_started"),
        _server("response.output_text.done", "`text`: exactly the deltas sent", strand=CANCELLED),
        _server("response.content_part.done", strand=CANCELLED),
        _server("response.output_item.done", "the item, `incomplete`, holding the text sent", strand=CANCELLED),
        _server("conversation.item.done", strand=CANCELLED),
        _server("response.done", '`status: "cancelled"`, `status_details.reason: "turn_detected"`', strand=CANCELLED),
        _server("input_audio_buffer.speech_stopped"),
        _server("input_audio_buffer.committed"),
        *_USER_ITEM,
        *_TEXT_RESPONSE,
    ),
    "tests/e2e/test_turn_taking.py",
)

SEQUENCES = (TEXT_TURN, COMMITTED_TURN, SERVER_VAD_TURN, TOOL_CALL, BARGE_IN)
"""Every reference sequence, in the order the reference shows them."""
