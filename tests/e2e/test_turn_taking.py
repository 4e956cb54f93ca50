"""Server VAD, barge-in, truncation, input transcription and binary audio frames, over the real server.

Speech is espeak-ng's (tests/support/speech.py) with silences of known length, streamed as GA PCM16 at 24 kHz in
20 ms chunks, faster than real time; every server frame is validated against openai's types.
"""

from __future__ import annotations

from typing import Any

import pytest

from aural.protocols.sequences import BARGE_IN, CANCELLED, SERVER_VAD_TURN, server_types
from tests.support.client import (
    Event,
    RawClient,
    assert_error,
    audio_turn,
    b64,
    collapsed_types,
    response_events,
    text_turn,
)
from tests.support.speech import utterance

from .conftest import WIRE_RATE, Connect, open_session, pcm_ms, start_runaway

pytestmark = pytest.mark.model

TOLERANCE_MS = 100
CHUNK = 2 * WIRE_RATE // 50  # 20 ms of PCM16


async def stream(client: RawClient, pcm: bytes) -> None:
    for start in range(0, len(pcm), CHUNK):
        await client.send({"type": "input_audio_buffer.append", "audio": b64(pcm[start : start + CHUNK])})


async def server_vad(client: RawClient, **settings: Any) -> None:
    detection = {"type": "server_vad", "silence_duration_ms": 500, **settings}
    await client.send({"type": "session.update", "session": {"type": "realtime", "max_output_tokens": 16,
        "audio": {"input": {"turn_detection": detection}}}})  # fmt: skip
    updated = await client.expect("session.updated")
    assert updated["session"]["audio"]["input"]["turn_detection"]["prefix_padding_ms"] == 300


async def test_turns_are_found_where_the_speech_is(session: RawClient) -> None:
    speech = utterance(["Hello there, how are you today?", "I would like a table for two."], [1.5], rate=WIRE_RATE)
    await server_vad(session, create_response=False)
    await stream(session, speech.pcm16())
    for start, end in speech.segments:
        started = await session.expect("input_audio_buffer.speech_started")
        assert abs(started["audio_start_ms"] + 300 - start * 1000) <= TOLERANCE_MS
        stopped = await session.expect("input_audio_buffer.speech_stopped")
        assert abs(stopped["audio_end_ms"] - end * 1000) <= TOLERANCE_MS
        assert stopped["item_id"] == started["item_id"]
        committed = await session.expect("input_audio_buffer.committed")
        assert committed["item_id"] == started["item_id"]
        added = await session.expect("conversation.item.added")
        assert added["item"]["content"][0]["type"] == "input_audio"
        await session.expect("conversation.item.done")


async def test_a_detected_turn_is_answered(session: RawClient) -> None:
    speech = utterance(["Hello there, how are you today?"], [], rate=WIRE_RATE)
    await server_vad(session)
    await stream(session, speech.pcm16())
    events = await session.recv_until("response.done")
    assert collapsed_types(events) == server_types(SERVER_VAD_TURN)
    assert events[-1]["response"]["status"] in ("completed", "incomplete")
    audio_tokens = events[-1]["response"]["usage"]["input_token_details"]["audio_tokens"]
    assert audio_tokens > 0


async def test_speech_over_a_response_cancels_it_and_the_item_keeps_what_was_sent(session: RawClient) -> None:
    await server_vad(session)
    response_id = await start_runaway(session)
    await stream(session, utterance(["Stop, please."], [], lead=0.2, rate=WIRE_RATE).pcm16())
    await session.recv_until("input_audio_buffer.speech_started")
    barge_in = session.events[-2:] + await session.recv_until("response.done")
    turn = response_events(session, response_id)
    assert turn.response["status"] == "cancelled"
    assert turn.response["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    sent = turn.streamed_text
    (item_done,) = [e for e in turn.events if e["type"] == "response.output_item.done"]
    assert item_done["item"]["content"][0]["text"] == sent, "the item holds exactly the text the client received"
    answer = await session.recv_until("response.done")
    closing = [event for event in barge_in if event in turn.events or event.get("item") == item_done["item"]]
    assert collapsed_types(closing) == server_types(BARGE_IN, CANCELLED)
    taken = [event for event in barge_in if event not in closing]
    assert collapsed_types(taken + answer) == server_types(BARGE_IN)
    assert answer[-1]["response"]["status"] in ("completed", "incomplete"), "the user's turn is then answered"
    assert answer[-1]["response"]["usage"]["input_token_details"]["cached_tokens"] > 0
    await session.send({"type": "conversation.item.retrieve", "item_id": item_done["item"]["id"]})
    retrieved = await session.expect("conversation.item.retrieved")
    assert retrieved["item"]["content"][0]["text"] == sent


async def test_truncating_the_reply_text_keeps_the_conversation_going(session: RawClient, speech_pcm: bytes) -> None:
    turn = await audio_turn(session, pcm_ms(speech_pcm, 0, 1500), max_tokens=12)
    reply = turn.one("response.output_item.done")["item"]
    await session.send({"type": "conversation.item.truncate", "item_id": reply["id"], "content_index": 0,
                        "audio_end_ms": 0, "text_end": 2})  # fmt: skip
    truncated = await session.expect("conversation.item.truncated")
    assert truncated["item_id"] == reply["id"]
    await session.send({"type": "conversation.item.retrieve", "item_id": reply["id"]})
    assert (await session.expect("conversation.item.retrieved"))["item"]["content"][0]["text"] == turn.streamed_text[:2]
    after = await text_turn(session, "And then?")
    assert after.cached_tokens > 0, "the cache is cut back, not thrown away"


async def test_truncating_past_the_audio_is_an_error(session: RawClient, speech_pcm: bytes) -> None:
    await session.send({"type": "input_audio_buffer.append", "audio": b64(pcm_ms(speech_pcm, 0, 500))})
    await session.send({"type": "input_audio_buffer.commit"})
    committed = await session.expect("input_audio_buffer.committed")
    await session.recv_until("conversation.item.done")
    await session.send({"type": "conversation.item.truncate", "item_id": committed["item_id"], "content_index": 0,
                        "audio_end_ms": 9000, "event_id": "evt_cut"})  # fmt: skip
    assert_error(await session.expect("error"), "invalid_value", param="audio_end_ms", event_id="evt_cut")


async def test_input_transcription_is_streamed_and_kept(session: RawClient, speech_pcm: bytes) -> None:
    await session.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en"}}}}})  # fmt: skip
    await session.expect("session.updated")
    await session.send({"type": "input_audio_buffer.append", "audio": b64(pcm_ms(speech_pcm, 0, 1500))})
    await session.send({"type": "input_audio_buffer.commit"})
    events = await session.recv_until("conversation.item.input_audio_transcription.completed")
    item_id = events[0]["item_id"]
    deltas = [e["delta"] for e in events if e["type"] == "conversation.item.input_audio_transcription.delta"]
    completed = events[-1]
    assert completed["item_id"] == item_id and completed["transcript"] == "".join(deltas)
    assert completed["usage"]["output_tokens"] >= 1
    await session.send({"type": "conversation.item.retrieve", "item_id": item_id})
    retrieved = await session.expect("conversation.item.retrieved")
    assert retrieved["item"]["content"][0]["transcript"] == completed["transcript"]


async def test_binary_frames_carry_audio_when_negotiated(connect: Connect, speech_pcm: bytes) -> None:
    client = await connect(subprotocols=["aural.binary-audio"])
    assert client.subprotocol == "aural.binary-audio"
    await client.expect("session.created")
    audio = pcm_ms(speech_pcm, 0, 1000)
    for start in range(0, len(audio), 4801):  # odd sizes: a chunk may end inside a sample
        await client.send_frame(audio[start : start + 4801])
    await client.send({"type": "input_audio_buffer.commit"})
    committed: Event = await client.expect("input_audio_buffer.committed")
    await client.recv_until("conversation.item.done")
    assert committed["item_id"]
    text = await open_session(connect)  # a client that did not ask keeps JSON-only frames
    assert text.subprotocol is None


@pytest.mark.parametrize("settings", [{"threshold": 2.0}, {"silence_duration_ms": -1}])
async def test_bad_vad_settings_are_refused(session: RawClient, settings: dict[str, Any]) -> None:
    await session.send({"type": "session.update", "event_id": "evt_vad", "session": {"type": "realtime", "audio": {
        "input": {"turn_detection": {"type": "server_vad", **settings}}}}})  # fmt: skip
    error = await session.expect("error")
    assert error["error"]["param"].startswith("session.audio.input.turn_detection.")
    assert error["error"]["event_id"] == "evt_vad"
    await text_turn(session, "Still there?")
