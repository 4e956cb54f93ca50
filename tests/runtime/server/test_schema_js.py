"""The generated JSON Schema, as a JavaScript client would use it: ajv in strict 2020-12 mode compiles it and
accepts every event of a real conversation (each client event sent and each server event received, over the
server with the scripted engine: text, a tool call and its result, server VAD with a barge-in, history edits,
errors), and refuses invalid ones (`tests/js/check_schema.mjs`)."""

from __future__ import annotations

import json
from pathlib import Path

from aural.runtime.engine.base import ToolCallDelta, ToolCallDone
from tests.support.client import Event, RawClient, add_text, b64, read_response
from tests.support.fake_engine import FakeEngine, Reply
from tests.support.node import run_node

from .conftest import Connect
from .test_driver import tone

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOL = {"type": "function", "name": "weather", "parameters": PARAMETERS}
CALL = (ToolCallDelta(0, "weather", '{"city": '), ToolCallDone(0, "weather", '{"city": "Oslo"}'))


def recording(client: RawClient) -> list[Event]:
    """The client events `client` sends from now on, as sent."""
    sent: list[Event] = []
    send_frame = client.send_frame

    async def record(frame: str | bytes) -> None:
        sent.append(json.loads(frame))
        await send_frame(frame)

    client.send_frame = record
    return sent


async def converse(client: RawClient, fake: FakeEngine) -> None:
    """A conversation that sends every kind of client event and makes the server send most kinds of its own."""
    scripts = [("Hel", "lo."), CALL, ("Sunny.",), ("a", " transcript")]  # the last one transcribes the audio
    fake.script(*[Reply(events) for events in scripts], Reply(("Talking",), endless=True, pause=0.001))
    session = {"type": "realtime", "instructions": "Be brief.", "tools": [TOOL], "max_output_tokens": 64,
               "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None,
                                   "transcription": {"model": "any", "language": "en"}}}}  # fmt: skip
    await client.send({"type": "session.update", "session": session, "event_id": "evt_1"})
    await client.expect("session.updated")
    await add_text(client, "Hi")
    await client.send({"type": "response.create", "response": {"metadata": {"client_event_id": "evt_2"}}})
    text = await read_response(client)
    await client.send({"type": "response.create", "response": {"tool_choice": {"type": "function", "name": "weather"}}})
    call = (await read_response(client)).response["output"][0]
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"sky": "clear"}'}
    await client.send({"type": "conversation.item.create", "item": output, "previous_item_id": call["id"]})
    await client.send({"type": "response.create"})
    await read_response(client)
    await client.send({"type": "input_audio_buffer.append", "audio": b64(tone(0.2))})
    await client.send({"type": "input_audio_buffer.commit"})
    await client.recv_until("conversation.item.input_audio_transcription.completed")
    await client.send({"type": "input_audio_buffer.append", "audio": b64(tone(0.1))})
    await client.send({"type": "input_audio_buffer.clear"})
    await client.expect("input_audio_buffer.cleared")
    reply = text.response["output"][0]["id"]
    await client.send({"type": "conversation.item.truncate", "item_id": reply, "content_index": 0, "audio_end_ms": 0,
                       "text_end": 3})  # fmt: skip
    await client.expect("conversation.item.truncated")
    await client.send({"type": "conversation.item.retrieve", "item_id": reply})
    await client.expect("conversation.item.retrieved")
    await client.send({"type": "conversation.item.delete", "item_id": reply})
    await client.expect("conversation.item.deleted")
    await client.send({"type": "response.cancel", "event_id": "evt_3"})
    await client.expect("error")
    vad = {"type": "server_vad", "silence_duration_ms": 200, "create_response": True, "interrupt_response": True}
    await client.send({"type": "session.update", "session": {"audio": {"input": {"turn_detection": vad}}}})
    await client.expect("session.updated")
    await client.send({"type": "response.create", "response": {"max_output_tokens": "inf"}})
    await client.recv_until("response.output_text.delta")
    await client.send({"type": "input_audio_buffer.append", "audio": b64(tone(0.5) + tone(0.5, amplitude=0))})
    await client.recv_until("response.done")  # the barge-in cancelled it
    await client.recv_until("response.done")  # the user's turn was answered


async def test_ajv_strict_accepts_a_real_conversation_and_refuses_invalid_events(
    connect: Connect, fake: FakeEngine, tmp_path: Path
) -> None:
    client = await connect()
    sent = recording(client)
    await converse(client, fake)
    kinds = {event["type"] for event in client.events}
    assert {"response.function_call_arguments.done", "input_audio_buffer.speech_stopped", "error"} <= kinds
    events = tmp_path / "events.json"
    events.write_text(json.dumps({"client": sent, "server": client.events}), encoding="utf-8")
    assert "recorded events valid" in run_node("check_schema.mjs", str(events))
