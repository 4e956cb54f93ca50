"""Server VAD, barge-in, truncation and transcription in the state machine, with scripted speech probabilities.

The voice activity model is not run here (tests/runtime/test_vad.py does that on real speech): the
probabilities the driver would report are scripted, 0.9 for speech and 0.0 for silence, one per 32 ms.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import pytest

from aural.protocols.models import MessageItem
from aural.protocols.server_events import InputAudioBufferSpeechStarted
from aural.runtime.engine.base import AudioPart, GenerationDone, TextDelta, TokenUsage
from aural.runtime.errors import ModelFailure
from aural.runtime.session.commands import CancelResponse, DetectSpeech, Prefill, StartResponse, Transcribe
from aural.runtime.session.inputs import Transcribed
from aural.runtime.session.session import ConversationSession
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import Output, generated, of, receive, scored, send, types

WINDOW = 512  # samples per probability, 32 ms


def _append(session: ConversationSession, windows: int) -> list[Output]:
    """Append `windows` × 32 ms of a 16 kHz tone (its content does not matter: probabilities are scripted)."""
    t = np.arange(windows * WINDOW) / 16000
    pcm = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes()
    return send(session, type="input_audio_buffer.append", audio=base64.b64encode(pcm).decode())


def _speech(session: ConversationSession, pattern: list[tuple[float, int]], stream: int = 1) -> list[Output]:
    """Append audio for `pattern` ([(probability, windows)…]) and report its probabilities."""
    probabilities = [p for p, n in pattern for _ in range(n)]
    appended = _append(session, len(probabilities))
    assert sum(c.samples.size for c in of(appended, DetectSpeech)) == len(probabilities) * WINDOW
    return scored(session, stream, probabilities)


def _vad(session: ConversationSession, **settings: Any) -> None:
    send(session, type="session.update", session={"audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 16000},
        "turn_detection": {"type": "server_vad", **settings}}}})  # fmt: skip


@pytest.fixture
def session() -> ConversationSession:
    conversation = ConversationSession("tiny", CAPABILITIES)
    _vad(conversation)
    return conversation


def test_a_turn_is_detected_committed_and_answered(session: ConversationSession) -> None:
    out = _speech(session, [(0.0, 20), (0.9, 40), (0.0, 20)])
    assert types(out) == [  # the events, then the commands
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "Prefill",
        "StartResponse",
    ]
    started, stopped, committed = out[:3]
    (prefill,) = of(out, Prefill)
    assert started.audio_start_ms == 20 * 32 - 300, "onset minus prefix_padding_ms"
    assert stopped.audio_end_ms == 60 * 32
    assert started.item_id == stopped.item_id == committed.item_id
    (start,) = of(out, StartResponse)
    (audio,) = start.conversation[-1].parts
    assert isinstance(audio, AudioPart) and audio.samples.size == (60 * 32 - 340) * 16
    assert start.conversation[-1].key == committed.item_id
    (spoken,) = prefill.conversation[-1].parts
    assert prefill.conversation[-1].key == start.conversation[-1].key and spoken.key == audio.key
    assert np.array_equal(spoken.samples, audio.samples), "the speculative prefill saw exactly the committed turn"


def test_a_pause_shorter_than_the_silence_duration_does_not_split_a_turn(session: ConversationSession) -> None:
    out = _speech(session, [(0.0, 10), (0.9, 20), (0.0, 10), (0.9, 20), (0.0, 20)])
    assert types(out).count("input_audio_buffer.speech_started") == 1
    commands = [kind for kind in types(out) if kind in ("Prefill", "StopPrefill", "StartResponse")]
    assert commands == ["Prefill", "StopPrefill", "Prefill", "StartResponse"], (
        "each fall into silence prefills speculatively; speech that goes on stops that prefill"
    )
    (stopped,) = [o for o in out if getattr(o, "type", "") == "input_audio_buffer.speech_stopped"]
    assert stopped.audio_end_ms == 60 * 32


def test_speech_over_a_response_cancels_it_and_keeps_only_the_text_sent(session: ConversationSession) -> None:
    (start,) = of(_speech(session, [(0.0, 10), (0.9, 20), (0.0, 20)]), StartResponse)
    generated(session, start.response_id, "Hello")
    out = _speech(session, [(0.9, 10)])
    assert types(out) == ["input_audio_buffer.speech_started", "CancelResponse"]
    assert generated(session, start.response_id, " world") == [], "nothing more is sent after the cancel"
    done = generated(session, start.response_id, GenerationDone("cancelled", TokenUsage(10, 0, 5, 3)))
    response = next(o for o in done if getattr(o, "type", "") == "response.done").response
    assert response.status == "cancelled" and response.status_details.reason == "turn_detected"
    assistant = session.items.messages()[-1]
    assert assistant.role == "assistant" and assistant.parts == ("Hello",)
    out = _speech(session, [(0.9, 10), (0.0, 20)])
    (second,) = of(out, StartResponse)
    assert [m.role for m in second.conversation] == ["user", "assistant", "user"]


def test_without_interrupt_the_next_turn_is_answered_after_the_running_response(session: ConversationSession) -> None:
    _vad(session, interrupt_response=False)
    (first,) = of(_speech(session, [(0.0, 10), (0.9, 20), (0.0, 20)], stream=2), StartResponse)
    out = _speech(session, [(0.9, 20), (0.0, 20)], stream=2)
    assert not of(out, CancelResponse) and not of(out, StartResponse) and not of(out, Prefill)
    assert "input_audio_buffer.committed" in types(out)
    done = generated(session, first.response_id, GenerationDone("stop", TokenUsage(10, 0, 5, 3)))
    (second,) = of(done, StartResponse)
    assert [m.role for m in second.conversation] == ["user", "user", "assistant"], "the empty reply closes last"


def test_long_speech_prefills_each_completed_clip(session: ConversationSession) -> None:
    windows_per_clip = 30 * 16000 // WINDOW + 1
    out = _speech(session, [(0.0, 10), (0.9, windows_per_clip)]) + _speech(session, [(0.9, windows_per_clip)])
    prefills = of(out, Prefill)
    assert [p.conversation[-1].parts[0].samples.size for p in prefills] == [30 * 16000, 60 * 16000]
    assert len({p.conversation[-1].key for p in prefills}) == 1, "the partial turn keeps its item id"


@pytest.mark.parametrize("batch", [1, 2, 3, 40])
def test_a_turn_starts_where_its_speech_does_however_the_windows_are_reported(
    session: ConversationSession, batch: int
) -> None:
    """The detector confirms speech a few windows after it began: the audio before its onset is kept until
    then, however many windows each report holds."""
    probabilities = [0.0] * 20 + [0.9] * 20
    _append(session, len(probabilities))
    started = []
    for first in range(0, len(probabilities), batch):
        started += of(scored(session, 1, probabilities[first : first + batch]), InputAudioBufferSpeechStarted)
    assert [event.audio_start_ms for event in started] == [20 * 32 - 300]


def test_stale_detection_streams_are_ignored(session: ConversationSession) -> None:
    _vad(session, silence_duration_ms=300)
    appended = _append(session, 10)
    assert {c.stream for c in of(appended, DetectSpeech)} == {2}
    assert scored(session, 1, [0.9] * 10) == []
    assert types(scored(session, 2, [0.9] * 10)) == ["input_audio_buffer.speech_started"]


def test_idle_timeout_commits_and_answers(session: ConversationSession) -> None:
    _vad(session, idle_timeout_ms=1000)
    (start,) = of(_speech(session, [(0.0, 10), (0.9, 20), (0.0, 20)], stream=2), StartResponse)
    generated(session, start.response_id, GenerationDone("stop", TokenUsage(10, 0, 5, 3)))
    assert _speech(session, [(0.0, 20)], stream=2) == []
    out = _speech(session, [(0.0, 20)], stream=2)
    assert types(out)[0] == "input_audio_buffer.timeout_triggered"
    assert "StartResponse" in types(out)


def test_manual_commit_during_speech_uses_the_announced_item(session: ConversationSession) -> None:
    (started,) = _speech(session, [(0.0, 10), (0.9, 20)])
    committed = send(session, type="input_audio_buffer.commit")[0]
    assert committed.item_id == started.item_id
    assert not [o for o in _speech(session, [(0.0, 30)]) if getattr(o, "type", "") == "input_audio_buffer.committed"]


def _answered(session: ConversationSession) -> tuple[str, str]:
    """A committed user turn and a finished reply 'Hello world'; returns their item ids."""
    (start,) = of(_speech(session, [(0.0, 10), (0.9, 40), (0.0, 20)]), StartResponse)
    generated(session, start.response_id, "Hello world")
    generated(session, start.response_id, GenerationDone("stop", TokenUsage(10, 0, 5, 3)))
    return start.conversation[-1].key, start.reply_key


def test_truncate_cuts_user_audio_and_assistant_text(session: ConversationSession) -> None:
    user, reply = _answered(session)
    out = send(session, type="conversation.item.truncate", item_id=user, content_index=0, audio_end_ms=500)
    assert types(out) == ["conversation.item.truncated"]
    assert session.items.messages()[0].parts[0].samples.size == 8000
    out = send(session, type="conversation.item.truncate", item_id=reply, content_index=0, audio_end_ms=0, text_end=5)
    assert types(out) == ["conversation.item.truncated"]
    assert session.items.messages()[1].parts == ("Hello",)


@pytest.mark.parametrize(
    ("target", "fields", "param"),
    [
        ("user", {"audio_end_ms": 99_000}, "audio_end_ms"),
        ("user", {"audio_end_ms": 50}, "audio_end_ms"),
        ("user", {"content_index": 3, "audio_end_ms": 100}, "content_index"),
        ("reply", {"audio_end_ms": 100}, "text_end"),
        ("reply", {"audio_end_ms": 0, "text_end": 99}, "text_end"),
        ("nobody", {"audio_end_ms": 100}, "item_id"),
    ],
)
def test_bad_truncations_change_nothing(
    session: ConversationSession, target: str, fields: dict[str, Any], param: str
) -> None:
    user, reply = _answered(session)
    before = [m.parts for m in session.items.messages()]
    item_id = {"user": user, "reply": reply, "nobody": "item_nope"}[target]
    (error,) = send(session, type="conversation.item.truncate", item_id=item_id, **{"content_index": 0, **fields})
    assert error.type == "error" and error.error.param == param
    after = [m.parts for m in session.items.messages()]
    assert len(after) == len(before) and after[1] == before[1] and after[0][0].samples.size == before[0][0].samples.size


def test_an_item_cannot_be_truncated_while_its_response_runs(session: ConversationSession) -> None:
    (start,) = of(_speech(session, [(0.0, 10), (0.9, 20), (0.0, 20)]), StartResponse)
    generated(session, start.response_id, "Hi")
    (error,) = send(session, type="conversation.item.truncate", item_id=start.reply_key, content_index=0,
                     audio_end_ms=0, text_end=1)  # fmt: skip
    assert error.error.param == "item_id"


def test_transcription_runs_aside_and_lands_in_the_item(session: ConversationSession) -> None:
    send(session, type="session.update", session={"audio": {"input": {"transcription": {"language": "en"}}}})
    out = _speech(session, [(0.0, 10), (0.9, 20), (0.0, 20)], stream=1)
    (transcribe,) = of(out, Transcribe)
    assert types(out).index("Transcribe") < types(out).index("StartResponse")
    (message,) = transcribe.conversation
    assert isinstance(message.parts[0], AudioPart) and "Transcribe" in str(message.parts[1])
    deltas = [
        *receive(session, Transcribed(transcribe.item_id, 0, TextDelta("hel", ()))),
        *receive(session, Transcribed(transcribe.item_id, 0, TextDelta("lo", ()))),
    ]
    assert [d.delta for d in deltas] == ["hel", "lo"]
    (completed,) = receive(
        session, Transcribed(transcribe.item_id, 0, GenerationDone("stop", TokenUsage(40, 0, 30, 2)))
    )
    assert completed.transcript == "hello" and completed.usage.total_tokens == 42
    item = session.items.get(transcribe.item_id).item
    assert isinstance(item, MessageItem) and item.content[0].transcript == "hello"


def test_failed_transcription_is_reported(session: ConversationSession) -> None:
    send(session, type="session.update", session={"audio": {"input": {"transcription": {}}}})
    (transcribe,) = of(_speech(session, [(0.0, 10), (0.9, 20), (0.0, 20)]), Transcribe)
    failure = GenerationDone("error", error=ModelFailure("failed"))
    (failed,) = receive(session, Transcribed(transcribe.item_id, 0, failure))
    assert failed.type == "conversation.item.input_audio_transcription.failed" and failed.error.code == "server_error"
