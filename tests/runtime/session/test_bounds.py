"""What one conversation may hold: items, input audio and text past `ConversationBounds` are refused with
`conversation_full` and change nothing; deleting items makes room; a response's own items are never refused;
audio that ends a stream past the buffer's bound is refused whole."""

from __future__ import annotations

import base64

import numpy as np

from aural.protocols.errors import ErrorCode, ProtocolError
from aural.runtime.engine.base import GenerationDone, TokenUsage
from aural.runtime.session.commands import StartResponse
from aural.runtime.session.input_audio import InputBuffer
from aural.runtime.session.items import ConversationBounds
from aural.runtime.session.session import ConversationSession
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import generated, send, types


def _pcm24k(seconds: float) -> str:
    t = np.arange(int(seconds * 24000)) / 24000
    return base64.b64encode((np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()).decode()


def _text(text: str) -> dict[str, object]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _session(**bounds: float) -> ConversationSession:
    return ConversationSession("tiny", CAPABILITIES, bounds=ConversationBounds(**bounds))  # type: ignore[arg-type]


def test_items_past_the_bound_are_refused_until_one_is_deleted() -> None:
    session = _session(items=3)
    for index in range(3):
        assert types(send(session, type="conversation.item.create", item=_text(f"t{index}"))) == [
            "conversation.item.added",
            "conversation.item.done",
        ]
    (refused,) = send(session, type="conversation.item.create", event_id="e4", item=_text("one too many"))
    assert refused.type == "error" and refused.error.code == "conversation_full"
    assert refused.error.event_id == "e4" and refused.error.param == "item"
    assert len(session.items) == 3
    first = next(iter(session.items)).id
    send(session, type="conversation.item.delete", item_id=first)
    assert (
        types(send(session, type="conversation.item.create", item=_text("now it fits")))[0] == "conversation.item.added"
    )


def test_text_is_counted_in_characters_across_items() -> None:
    session = _session(text_chars=10)
    assert send(session, type="conversation.item.create", item=_text("123456"))[0].type == "conversation.item.added"
    (refused,) = send(session, type="conversation.item.create", item=_text("12345"))
    assert refused.error.code == "conversation_full" and "10 characters" in refused.error.message
    assert send(session, type="conversation.item.create", item=_text("1234"))[0].type == "conversation.item.added"


def test_a_commit_past_the_audio_bound_keeps_the_buffer() -> None:
    session = _session(audio_seconds=1.0)
    send(session, type="input_audio_buffer.append", audio=_pcm24k(0.8))
    assert send(session, type="input_audio_buffer.commit")[0].type == "input_audio_buffer.committed"
    send(session, type="input_audio_buffer.append", audio=_pcm24k(0.5))
    (refused,) = send(session, type="input_audio_buffer.commit", event_id="c2")
    assert refused.error.code == "conversation_full" and refused.error.event_id == "c2"
    first = next(iter(session.items)).id
    send(session, type="conversation.item.delete", item_id=first)
    committed = send(session, type="input_audio_buffer.commit")  # the refused audio was kept in the buffer
    assert committed[0].type == "input_audio_buffer.committed"
    assert next(iter(session.items)).audio[0].size == 8000


def test_a_response_is_never_refused_its_own_items() -> None:
    session = _session(items=1)
    send(session, type="conversation.item.create", item=_text("hello"))
    start = send(session, type="response.create")[-1]
    assert isinstance(start, StartResponse)
    generated(session, start.response_id, "an answer past the bound")
    done = generated(session, start.response_id, GenerationDone("stop", TokenUsage(5, 5, 0, 0)))
    assert "response.done" in types(done) and "error" not in types(done)
    assert len(session.items) == 2
    (refused,) = send(session, type="conversation.item.create", item=_text("more"))
    assert refused.error.code == "conversation_full"


def test_appended_audio_past_the_buffer_bound_is_refused_and_the_rest_kept() -> None:
    session = ConversationSession("tiny", CAPABILITIES, max_buffer_seconds=1.0)
    send(session, type="input_audio_buffer.append", audio=_pcm24k(0.6))
    (refused,) = send(session, type="input_audio_buffer.append", audio=_pcm24k(0.6))
    assert refused.error.code == "input_audio_buffer_full"
    assert send(session, type="input_audio_buffer.commit")[0].type == "input_audio_buffer.committed"
    assert next(iter(session.items)).audio[0].size == 9600


def test_the_last_samples_of_a_stream_past_the_bound_are_refused_whole() -> None:
    buffer = InputBuffer(max_samples=100)
    buffer.decoded(np.ones(60, dtype=np.float32), None)
    refused = buffer.ended(np.ones(50, dtype=np.float32))
    assert isinstance(refused, ProtocolError) and refused.code is ErrorCode.BUFFER_FULL
    assert buffer.size == 60 and not buffer.streaming
    assert buffer.ended(np.ones(40, dtype=np.float32)) is None and buffer.size == 100
