"""The conversation state machine on its own: client events in, server events and commands out."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from aural.protocols import client_events as ce
from aural.runtime.engine.base import AudioPart, GenerationDone, TokenUsage, Truncation
from aural.runtime.session.commands import CancelResponse, StartResponse
from aural.runtime.session.inputs import ClientSent, Opened
from aural.runtime.session.session import ConversationSession
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import Output, generated, receive, send, types


def _pcm24k(seconds: float) -> str:
    t = np.arange(int(seconds * 24000)) / 24000
    return base64.b64encode((np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()).decode()


@pytest.fixture
def session() -> ConversationSession:
    return ConversationSession("tiny", CAPABILITIES)


def test_session_created_carries_the_config(session: ConversationSession) -> None:
    (created,) = receive(session, Opened())
    assert created.type == "session.created"
    assert created.session.type == "realtime" and created.session.model == "tiny"


def test_a_full_text_turn_in_reference_order(session: ConversationSession) -> None:
    assert send(session, type="input_audio_buffer.append", audio=_pcm24k(0.5)) == []
    committed = send(session, type="input_audio_buffer.commit", event_id="c1")
    assert types(committed) == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
    user_id = committed[0].item_id
    assert committed[1].item.id == user_id and committed[1].item.role == "user"

    started = send(session, type="response.create", response={"metadata": {"client_event_id": "r1"}})
    assert types(started) == ["response.created", "StartResponse"]
    created, start = started
    assert created.response.metadata == {"client_event_id": "r1"}
    assert isinstance(start, StartResponse) and start.response_id == created.response.id
    (message,) = start.conversation
    assert message.role == "user" and isinstance(message.parts[0], AudioPart)
    assert message.parts[0].samples.size == 8000  # 0.5 s at 16 kHz

    first = generated(session, start.response_id, "Hel")
    assert types(first) == [
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    assert first[1].previous_item_id == user_id
    assert first[0].item.id == start.reply_key == first[3].item_id
    assert types(generated(session, start.response_id, "lo")) == ["response.output_text.delta"]
    done = generated(session, start.response_id, GenerationDone("stop", TokenUsage(40, 10, 12, 2)))
    assert types(done) == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
        "rate_limits.updated",
    ]
    (tokens,) = done.pop().rate_limits
    assert (tokens.name, tokens.limit, tokens.remaining) == ("tokens", 8192, 8192 - 42)
    assert done[0].text == "Hello" and done[3].previous_item_id == user_id
    response = done[-1].response
    assert response.status == "completed" and response.output[0].content[0].text == "Hello"
    assert response.usage.input_token_details.cached_tokens == 10
    assert response.usage.input_token_details.audio_tokens == 12
    assert [s.id for s in session.items] == [user_id, start.reply_key]


def test_instructions_become_the_system_turn(session: ConversationSession) -> None:
    out = send(session, type="session.update", session={"instructions": "Be brief.", "tools": [{"name": "f"}]})
    assert types(out) == ["session.updated"]
    assert [tool.name for tool in out[0].session.tools] == ["f"]
    send(session, type="conversation.item.create", item={"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "hi"}]})  # fmt: skip
    start = send(session, type="response.create")[-1]
    assert isinstance(start, StartResponse)
    assert [m.role for m in start.conversation] == ["system", "user"]
    assert start.conversation[0].parts == ("Be brief.",)


def test_server_vad_defaults_are_echoed_and_semantic_vad_runs_as_server_vad(session: ConversationSession) -> None:
    out = send(session, type="session.update", session={
        "audio": {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 700}}}})  # fmt: skip
    (updated,) = out
    vad = updated.session.audio.input.turn_detection
    assert (vad.threshold, vad.prefix_padding_ms, vad.silence_duration_ms) == (0.5, 300, 700)
    assert vad.create_response is True and vad.interrupt_response is True
    out = send(session, type="session.update", session={"audio": {"input": {"turn_detection": {
        "type": "semantic_vad", "eagerness": "medium", "interrupt_response": False}}}})  # fmt: skip
    (updated,) = out
    vad = updated.session.audio.input.turn_detection
    assert vad.type == "server_vad", "the session reports what it runs"
    assert (vad.silence_duration_ms, vad.create_response, vad.interrupt_response) == (500, True, False)


def test_commit_too_short_keeps_the_audio(session: ConversationSession) -> None:
    send(session, type="input_audio_buffer.append", audio=_pcm24k(0.05))
    (error,) = send(session, type="input_audio_buffer.commit")
    assert error.error.code == "input_audio_buffer_commit_empty"
    send(session, type="input_audio_buffer.append", audio=_pcm24k(0.1))
    committed = send(session, type="input_audio_buffer.commit")
    assert committed[0].type == "input_audio_buffer.committed"
    assert session.items.messages()[0].parts[0].samples.size == pytest.approx(2400, abs=2)


def test_one_response_at_a_time_and_cancel(session: ConversationSession) -> None:
    send(session, type="input_audio_buffer.append", audio=_pcm24k(0.3))
    send(session, type="input_audio_buffer.commit")
    start = send(session, type="response.create")[-1]
    (busy,) = send(session, type="response.create", event_id="x")
    assert busy.error.code == "conversation_already_has_active_response" and busy.error.event_id == "x"
    assert send(session, type="response.cancel") == [CancelResponse(start.response_id)]
    assert send(session, type="response.cancel") == []  # already being cancelled
    done = generated(session, start.response_id, GenerationDone("cancelled"))
    assert types(done) == ["response.done"]  # nothing said: no assistant item
    assert done[0].response.status_details.reason == "client_cancelled"
    assert len(session.items) == 1
    (idle,) = send(session, type="response.cancel")
    assert idle.error.code == "response_cancel_not_active"


def test_out_of_band_response_leaves_the_conversation_alone(session: ConversationSession) -> None:
    send(session, type="conversation.item.create", item={"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "hi"}]})  # fmt: skip
    out = send(session, type="response.create", response={"conversation": "none", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "summarize"}]}]})  # fmt: skip
    start = out[-1]
    assert isinstance(start, StartResponse) and not start.in_conversation
    assert [m.parts for m in start.conversation] == [("summarize",)]
    events = generated(session, start.response_id, "ok") + generated(session, start.response_id, GenerationDone("stop"))
    assert "conversation.item.added" not in types(events)
    assert len(session.items) == 1


def test_items_insert_delete_retrieve_and_errors(session: ConversationSession) -> None:
    def create(text: str, **extra: Any) -> list[Output]:
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}], **extra}
        return send(session, type="conversation.item.create", item=item)

    create("a", id="a")
    create("b", id="b")
    out = send(session, type="conversation.item.create", previous_item_id="root", item={
        "type": "message", "id": "z", "role": "system", "content": [{"type": "input_text", "text": "z"}]})  # fmt: skip
    assert out[0].previous_item_id is None
    assert [s.id for s in session.items] == ["z", "a", "b"]
    assert create("dup", id="a")[0].error.param == "item.id"
    assert send(session, type="conversation.item.retrieve", item_id="a")[0].item.id == "a"
    assert send(session, type="conversation.item.delete", item_id="a")[0].type == "conversation.item.deleted"
    for kind in ("conversation.item.delete", "conversation.item.retrieve"):
        assert send(session, type=kind, item_id="a")[0].error.code == "item_not_found"
    bad_audio = {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": "@@@"}]}
    assert send(session, type="conversation.item.create", item=bad_audio)[0].error.code == "invalid_audio"
    wrong = {"type": "message", "role": "assistant", "content": [{"type": "input_text", "text": "x"}]}
    assert send(session, type="conversation.item.create", item=wrong)[0].error.param == "item.content.0.type"
    assert [s.id for s in session.items] == ["z", "b"]


def test_bad_base64_and_format_change(session: ConversationSession) -> None:
    (error,) = send(session, type="input_audio_buffer.append", audio="not base64!", event_id="a1")
    assert error.error.code == "invalid_audio" and error.error.event_id == "a1"
    send(session, type="session.update", session={"audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    send(session, type="input_audio_buffer.append", audio=base64.b64encode(bytes(range(256)) * 8).decode())
    assert send(session, type="input_audio_buffer.commit")[0].type == "input_audio_buffer.committed"
    assert session.items.messages()[0].parts[0].samples.size == 4096  # 2048 bytes at 8 kHz → 16 kHz


def test_event_classes_are_handled(session: ConversationSession) -> None:
    assert types(receive(session, ClientSent(ce.InputAudioBufferClear()))) == ["input_audio_buffer.cleared"]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        (None, Truncation("auto")),
        ("disabled", Truncation("disabled")),
        (
            {"type": "retention_ratio", "retention_ratio": 0.6, "token_limits": {"post_instructions": 900}},
            Truncation("retention_ratio", 0.6, 900),
        ),
    ],
)
def test_the_truncation_setting_reaches_the_engine(session: ConversationSession, setting: Any, expected: Any) -> None:
    """GA's `session.truncation` (echoed as given; "auto" by default) decides how the engine cuts an overlong
    conversation."""
    if setting is not None:
        (updated,) = send(session, type="session.update", session={"type": "realtime", "truncation": setting})
        assert updated.session.model_dump(mode="json")["truncation"] == setting
    send(
        session,
        type="conversation.item.create",
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi."}]},
    )
    start = send(session, type="response.create")[-1]
    assert isinstance(start, StartResponse) and start.params.truncation == expected


def test_a_retention_limit_past_the_context_is_refused(session: ConversationSession) -> None:
    setting = {"type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": 10**6}}
    (error,) = send(session, type="session.update", session={"type": "realtime", "truncation": setting})
    assert error.type == "error" and error.error.param == "session.truncation.token_limits.post_instructions"
