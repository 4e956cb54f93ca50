"""The connection driver against the scripted engine: socket → session → events and commands → results back
through the session, with every frame checked against openai's and Pipecat's event types."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from aural.protocols.extensions import BINARY_AUDIO
from aural.protocols.models import FunctionTool
from aural.runtime.engine.base import AudioPart, ToolCallDelta, ToolCallDone
from aural.runtime.errors import ContextExceeded
from aural.runtime.session.inputs import ClientSent, Input
from aural.runtime.session.session import ConversationSession
from tests.support.client import (
    add_text,
    assert_consistent,
    assert_error,
    assert_turn_works,
    b64,
    cancel,
    create_response,
    read_response,
    text_turn,
)
from tests.support.fake_engine import DEFAULT_TEXT, FakeEngine, Reply

from .conftest import Connect

RATE = 24000  # the GA format, which openai's event types require
POLLS = 500  # a bound on waiting for background work, never a timing assertion


def tone(seconds: float, amplitude: float = 0.3) -> bytes:
    """PCM16 at 24 kHz: a tone, or silence with amplitude 0."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


async def until(condition: Any) -> None:
    """Wait, a bounded number of times, for background work to make `condition()` true."""
    for _ in range(POLLS):
        if condition():
            return
        await asyncio.sleep(0.01)
    assert condition()


async def test_a_text_turn_reaches_the_engine_and_streams_back(connect: Connect, fake: FakeEngine) -> None:
    fake.script(Reply(("Hel", "lo", " there.")))
    client = await connect()
    turn = await text_turn(client, "Hi")
    assert_consistent(turn)
    assert turn.streamed_text == "Hello there." and turn.response["status"] == "completed"
    [call] = fake.of_kind("generate")
    assert call.conversation[-1].parts == ("Hi",) and call.reply_key == turn.response["output"][0]["id"]
    assert call.params is not None and call.params.max_tokens == 12


async def test_cancel_stops_the_generation(connect: Connect, fake: FakeEngine) -> None:
    fake.script(Reply(("Counting",), endless=True, pause=0.001))
    client = await connect()
    await add_text(client, "Count forever.")
    await create_response(client, 4096)
    running = (await client.recv_until("response.created"))[-1]["response"]["id"]
    await client.recv_until("response.output_text.delta")
    turn = await cancel(client, running)
    assert turn.response["status"] == "cancelled"
    assert fake.sessions[0].generations[0].cancelled
    assert_consistent(turn)
    await assert_turn_works(client)


async def test_a_failing_engine_fails_the_response_and_the_conversation_goes_on(
    connect: Connect, fake: FakeEngine
) -> None:
    fake.script(Reply(("Par",), raises=RuntimeError("a bug in the engine")))
    client = await connect()
    turn = await text_turn(client, "Hi")
    assert turn.response["status"] == "failed"
    assert turn.response["status_details"]["error"]["code"] == "server_error"
    await assert_turn_works(client)


async def test_an_engine_error_is_a_typed_failure_with_its_wire_code(connect: Connect, fake: FakeEngine) -> None:
    fake.script(Reply((), reason="error", error=ContextExceeded("The conversation needs 9000 tokens.")))
    client = await connect()
    turn = await text_turn(client, "Hi")
    assert turn.response["status_details"]["error"]["code"] == "context_length_exceeded"
    error = turn.one("error")  # before `response.done`: a reader that stops there leaves nothing behind
    assert_error(error, "context_length_exceeded")
    assert error["error"]["message"] == "The conversation needs 9000 tokens."


async def test_a_bug_in_the_session_costs_one_error_event(
    connect: Connect, fake: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    receive = ConversationSession.receive

    def broken(self: ConversationSession, received: Input) -> Any:
        if isinstance(received, ClientSent) and received.event.type == "conversation.item.retrieve":
            raise RuntimeError("a bug")
        return receive(self, received)

    monkeypatch.setattr(ConversationSession, "receive", broken)
    client = await connect()
    await client.send({"type": "conversation.item.retrieve", "item_id": "x", "event_id": "evt_bug"})
    error = (await client.expect("error"))["error"]
    assert (error["type"], error["code"], error["event_id"]) == ("server_error", "server_error", "evt_bug")
    await assert_turn_works(client)


async def test_an_out_of_band_reply_runs_on_a_session_of_its_own(connect: Connect, fake: FakeEngine) -> None:
    client = await connect()
    await client.send({"type": "response.create", "response": {"conversation": "none", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Summarize."}]}]}})  # fmt: skip
    turn = await read_response(client)
    assert turn.streamed_text == DEFAULT_TEXT and turn.response.get("conversation_id") is None
    [call] = fake.of_kind("generate")
    assert call.session == 1, "not the conversation's own cache"
    await until(lambda: any(c.kind == "close" and c.session == 1 for c in fake.calls))


async def test_transcription_runs_aside_and_lands_in_the_item(connect: Connect, fake: FakeEngine) -> None:
    fake.script(Reply(("hello", " world")), Reply(("An answer.",)))
    client = await connect()
    update = {"type": "realtime", "audio": {"input": {"transcription": {"language": "en"}}}}
    await client.send({"type": "session.update", "session": update})
    await client.expect("session.updated")
    await client.send({"type": "input_audio_buffer.append", "audio": b64(tone(0.5))})
    await client.send({"type": "input_audio_buffer.commit"})
    committed = await client.expect("input_audio_buffer.committed")
    completed = (await client.recv_until("conversation.item.input_audio_transcription.completed"))[-1]
    assert completed["item_id"] == committed["item_id"] and completed["transcript"] == "hello world"
    transcription = fake.of_kind("generate")[0]
    assert transcription.session == 1 and isinstance(transcription.conversation[0].parts[0], AudioPart)
    assert transcription.conversation[0].parts[0].samples.size == 16000 // 2


async def test_server_vad_takes_a_turn_and_reads_it_ahead(connect: Connect, fake: FakeEngine) -> None:
    client = await connect()
    detection = {"type": "server_vad", "silence_duration_ms": 300, "prefix_padding_ms": 100}
    update = {"type": "realtime", "audio": {"input": {"turn_detection": detection}}}
    await client.send({"type": "session.update", "session": update})
    await client.expect("session.updated")
    audio = tone(0.5, 0) + tone(1.0) + tone(1.0, 0)
    chunk = 2 * RATE // 50  # 20 ms
    for start in range(0, len(audio), chunk):
        await client.send({"type": "input_audio_buffer.append", "audio": b64(audio[start : start + chunk])})
    events = await client.recv_until("response.done")
    assert [event["type"] for event in events][:5] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    assert abs(events[0]["audio_start_ms"] - 400) <= 32 and abs(events[1]["audio_end_ms"] - 1500) <= 64
    [reply] = fake.of_kind("generate")
    [user] = reply.conversation
    assert isinstance(user.parts[0], AudioPart) and user.key == events[2]["item_id"]
    [prefill] = fake.of_kind("prefill")  # when silence began
    assert np.array_equal(prefill.conversation[-1].parts[0].samples, user.parts[0].samples)  # type: ignore[union-attr]


async def test_speech_that_resumes_after_a_pause_stops_the_read_ahead_of_the_pause(
    connect: Connect, fake: FakeEngine
) -> None:
    fake.prefill_step = 60.0  # a read-ahead still running when speech resumes
    client = await connect()
    detection = {"type": "server_vad", "silence_duration_ms": 300, "create_response": False}
    update = {"type": "realtime", "audio": {"input": {"turn_detection": detection}}}
    await client.send({"type": "session.update", "session": update})
    await client.expect("session.updated")
    audio = tone(0.5) + tone(0.15, 0) + tone(0.5) + tone(0.5, 0)  # a pause shorter than the silence
    chunk = 2 * RATE // 50
    for start in range(0, len(audio), chunk):
        await client.send({"type": "input_audio_buffer.append", "audio": b64(audio[start : start + chunk])})
    await client.recv_until("conversation.item.done")
    await until(lambda: len(fake.prefills) >= 1)
    pause, outcome = fake.prefills[0]
    assert outcome == "cancelled"  # not left to run until the turn's own read-ahead superseded it
    first, turn = fake.of_kind("prefill")
    assert 0 < first.conversation[-1].parts[0].samples.size < turn.conversation[-1].parts[0].samples.size  # type: ignore[union-attr]
    assert first is pause


async def test_speech_over_a_response_interrupts_it(connect: Connect, fake: FakeEngine) -> None:
    fake.script(Reply(("Talking",), endless=True, pause=0.001))
    client = await connect()
    update = {
        "type": "realtime",
        "audio": {"input": {"turn_detection": {"type": "server_vad", "create_response": False}}},
    }
    await client.send({"type": "session.update", "session": update})
    await client.expect("session.updated")
    await add_text(client, "Talk.")
    await create_response(client, 4096)
    running = (await client.recv_until("response.output_text.delta"))[-1]["response_id"]
    await client.send({"type": "input_audio_buffer.append", "audio": b64(tone(0.5))})
    done = (await client.recv_until("response.done"))[-1]["response"]
    assert done["id"] == running and done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert "input_audio_buffer.speech_started" in [event["type"] for event in client.events]


class Clock:
    """Duck-typed server tools: what the runtime needs of them (`definitions`, `max_rounds`, `run`), recording
    the calls."""

    max_rounds = 8

    def __init__(self) -> None:
        self.definitions = [FunctionTool(name="get_time", parameters={"type": "object", "properties": {}})]
        self.calls: list[tuple[str, str]] = []

    async def run(self, name: str, arguments: str, *, logger: Any = None) -> str:
        self.calls.append((name, arguments))
        return "12:00"


async def test_server_tools_run_and_the_response_continues(connect: Connect, fake: FakeEngine) -> None:
    clock = Clock()
    call = (ToolCallDelta(0, "get_time", ""), ToolCallDone(0, "get_time", "{}"))
    fake.script(Reply(call), Reply(("It is noon.",)))
    client = await connect(server_tools=clock)
    await add_text(client, "What time is it?")
    await create_response(client)
    first = await read_response(client)
    assert first.response["output"][0]["type"] == "function_call"
    output = (await client.recv_until("conversation.item.added"))[-1]["item"]
    assert (output["type"], output["output"]) == ("function_call_output", "12:00")
    second = await read_response(client)
    assert second.streamed_text == "It is noon." and clock.calls == [("get_time", "{}")]
    continued = fake.of_kind("generate")[1]
    assert [message.role for message in continued.conversation] == ["user", "assistant", "tool"]


async def test_a_disconnect_cancels_the_generation_and_frees_the_engine_session(
    connect: Connect, fake: FakeEngine
) -> None:
    fake.script(Reply(("Talking",), endless=True, pause=0.001))
    client = await connect()
    await add_text(client, "Talk.")
    await create_response(client, 4096)
    await client.recv_until("response.output_text.delta")
    assert client.disconnect is not None
    await client.disconnect(False)
    await until(lambda: fake.sessions[0].closed and fake.sessions[0].generations[0].cancelled)


async def test_binary_frames_carry_audio_where_negotiated(connect: Connect) -> None:
    client = await connect(protocols=(BINARY_AUDIO,))
    assert client.subprotocol == BINARY_AUDIO
    await client.send_frame(tone(0.2))  # in the session's format
    await client.send({"type": "input_audio_buffer.commit"})
    await client.expect("input_audio_buffer.committed")
