"""The official `openai` package's realtime client against the runtime, changing only its base URL.

The client parses events leniently (`construct`), so its parsing proves nothing: every raw frame it
receives is validated strictly against openai's own server event types, must hold no field those types
lack (but for two that OpenAI's own server sends too), and must parse to the object the client builds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import RealtimeConversationItemUserMessageParam, RealtimeSessionCreateRequestParam
from pydantic import BaseModel

from .conftest import MODEL, Endpoint, RawClient, Turn, assert_consistent, b64, read_response, validate_openai

SESSION: RealtimeSessionCreateRequestParam = {
    "type": "realtime",
    "instructions": "Answer in one short sentence.",
    "output_modalities": ["text"],
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None}},
}
UNDECLARED_BY_OPENAI = {"event.session.id", "event.session.object"}
"""Fields that OpenAI's own server sends in `session.created` / `.updated` but its Python types omit."""


def unknown_fields(value: object, path: str = "event") -> list[str]:
    """The dotted paths of fields that openai's types do not declare (kept as pydantic extras)."""
    if isinstance(value, BaseModel):
        found = [f"{path}.{name}" for name in value.model_extra or {}]
        for name in type(value).model_fields:
            found += unknown_fields(getattr(value, name), f"{path}.{name}")
        return found
    if isinstance(value, list):
        return [field for index, item in enumerate(value) for field in unknown_fields(item, f"{path}.{index}")]
    return []


@pytest.fixture
async def realtime(server: Endpoint) -> AsyncIterator[AsyncRealtimeConnection]:
    client = AsyncOpenAI(api_key="test", websocket_base_url=f"ws://127.0.0.1:{server.port}/v1")
    async with client.realtime.connect(model=MODEL) as conn:
        yield conn
    await client.close()


@pytest.fixture
def frames(realtime: AsyncRealtimeConnection) -> RawClient:
    """The events the openai client receives, read as its raw frames and checked one by one."""

    async def receive_checked() -> bytes:
        raw = await realtime.recv_bytes()
        strict = validate_openai(raw)
        assert set(unknown_fields(strict)) <= UNDECLARED_BY_OPENAI
        assert realtime.parse_event(raw) == strict, "the client's own parsing agrees with strict validation"
        return raw

    return RawClient(receive_checked, realtime.send_raw)


async def configure(realtime: AsyncRealtimeConnection, frames: RawClient) -> dict[str, Any]:
    """session.update in the GA shape; returns the session of the `session.updated` that answers it."""
    await realtime.session.update(session=SESSION)
    await frames.expect("session.created")
    session: dict[str, Any] = (await frames.expect("session.updated"))["session"]
    return session


async def respond(realtime: AsyncRealtimeConnection, frames: RawClient, tag: str) -> Turn:
    await realtime.response.create(response={"max_output_tokens": 12, "metadata": {"client_event_id": tag}})
    turn = await read_response(frames)
    assert turn.response["metadata"] == {"client_event_id": tag}
    assert_consistent(turn)
    return turn


async def test_one_voice_turn(realtime: AsyncRealtimeConnection, frames: RawClient, speech_pcm: bytes) -> None:
    session = await configure(realtime, frames)
    assert session["type"] == "realtime"
    assert session["instructions"] == SESSION["instructions"]
    assert session["output_modalities"] == ["text"]
    assert session["audio"]["input"]["format"] == SESSION["audio"]["input"]["format"]
    assert session["audio"]["input"].get("turn_detection") is None

    await realtime.input_audio_buffer.append(audio=b64(speech_pcm))
    await realtime.input_audio_buffer.commit()
    turn = await respond(realtime, frames, "turn-1")

    committed = next(event for event in frames.events if event["type"] == "input_audio_buffer.committed")
    assistant_added = next(event for event in turn.events if event["type"] == "conversation.item.added")
    assert assistant_added["previous_item_id"] == committed["item_id"]
    assert turn.response["status"] in ("completed", "incomplete")


async def test_two_responses(realtime: AsyncRealtimeConnection, frames: RawClient, speech_pcm: bytes) -> None:
    await configure(realtime, frames)
    await realtime.input_audio_buffer.append(audio=b64(speech_pcm))
    await realtime.input_audio_buffer.commit()
    first = await respond(realtime, frames, "turn-1")

    item: RealtimeConversationItemUserMessageParam = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "And what does that mean?"}],
    }
    await realtime.conversation.item.create(item=item)
    second = await respond(realtime, frames, "turn-2")

    [user_text] = [
        event
        for event in frames.events
        if event["type"] == "conversation.item.done" and event["item"]["role"] == "user"
    ][1:]
    assert user_text["previous_item_id"] == first.response["output"][0]["id"]
    assert user_text["item"]["content"] == item["content"]
    assert first.response_id != second.response_id
    assert first.cached_tokens == 0
    assert second.cached_tokens > 0, "the conversation's KV cache stays resident between responses"
