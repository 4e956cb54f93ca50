"""The official `openai` package's realtime client against the runtime, changing only its base URL.

The client parses events leniently (`construct`), so its parsing proves nothing: every raw frame it
receives is validated strictly against openai's own server event types, must hold no field those types
lack (but for two that OpenAI's own server sends too), and must parse to the object the client builds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import jsonschema
import pytest
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import (
    ConversationItemAdded,
    ConversationItemDone,
    RealtimeConversationItemAssistantMessage,
    RealtimeConversationItemFunctionCall,
    RealtimeConversationItemFunctionCallOutput,
    RealtimeConversationItemUserMessageParam,
    RealtimeServerEvent,
    RealtimeSessionCreateRequestParam,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseTextDeltaEvent,
)
from pydantic import BaseModel

from aural.runtime.engine.base import Message
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from tests.support.client import RawClient, Turn, assert_consistent, b64, read_response, validate_openai
from tests.support.usage import ReferenceConversation

from .conftest import MODEL, Endpoint
from .test_tool_calls import PARAMS, TOOL

pytestmark = pytest.mark.model

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


_Event = TypeVar("_Event", bound=BaseModel)


async def read_typed_until(realtime: AsyncRealtimeConnection, frames: RawClient, last: type[_Event]) -> list[Any]:
    """Events parsed by the client itself (each raw frame checked first), up to one of type `last`."""
    events: list[RealtimeServerEvent] = []
    while not isinstance(events[-1] if events else None, last):
        events.append(realtime.parse_event(await frames.receive_frame()))
    return events


def only(events: list[Any], kind: type[_Event]) -> list[_Event]:
    return [event for event in events if isinstance(event, kind)]


async def test_usage_parses_and_counts_every_token(
    realtime: AsyncRealtimeConnection, frames: RawClient, engine: TransformersEngine
) -> None:
    """Two text turns: the client's typed `usage` equals the one counted from the processor's own rendering,
    and the second turn's cached tokens are all of the first turn's context (`tests.support.usage`)."""
    await configure(realtime, frames)
    reference = ReferenceConversation(engine, [Message("system", (SESSION["instructions"],))])
    for turn, text in enumerate(["Hello there.", "And what does that mean?"]):
        item: RealtimeConversationItemUserMessageParam = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        }
        await realtime.conversation.item.create(item=item)
        reference.messages.append(Message("user", (text,)))
        await realtime.response.create(response={"max_output_tokens": 12})
        done = (await read_typed_until(realtime, frames, ResponseDoneEvent))[-1]
        assert done.response.usage is not None
        assert done.response.usage.model_dump() == reference.respond(f"a{turn}", 12)
    assert done.response.usage.input_token_details.cached_tokens > 0


async def test_a_named_tool_call_answered_through_the_client(
    realtime: AsyncRealtimeConnection, frames: RawClient
) -> None:
    session: RealtimeSessionCreateRequestParam = {
        "type": "realtime",
        "output_modalities": ["text"],
        "tools": [{"type": "function", "name": "weather", "description": "The forecast.", "parameters": PARAMS}],
        "tool_choice": "none",
    }
    await realtime.session.update(session=session)
    await frames.expect("session.created")
    assert (await frames.expect("session.updated"))["session"]["tools"] == [TOOL]
    await realtime.conversation.item.create(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather in Oslo?"}]}
    )
    await read_typed_until(realtime, frames, ConversationItemDone)

    await realtime.response.create(
        response={"tool_choice": {"type": "function", "name": "weather"}, "max_output_tokens": 200}
    )
    call_events = await read_typed_until(realtime, frames, ResponseDoneEvent)
    assert isinstance(call_events[0], ResponseCreatedEvent)
    [added] = only(call_events, ResponseOutputItemAddedEvent)
    assert isinstance(added.item, RealtimeConversationItemFunctionCall) and added.item.name == "weather"
    [conversation_added] = only(call_events, ConversationItemAdded)
    assert isinstance(conversation_added.item, RealtimeConversationItemFunctionCall)
    deltas = only(call_events, ResponseFunctionCallArgumentsDeltaEvent)
    [arguments_done] = only(call_events, ResponseFunctionCallArgumentsDoneEvent)
    assert deltas and "".join(delta.delta for delta in deltas) == arguments_done.arguments
    assert {delta.call_id for delta in deltas} == {arguments_done.call_id, added.item.call_id}
    jsonschema.validate(json.loads(arguments_done.arguments), PARAMS)
    [item_done] = only(call_events, ResponseOutputItemDoneEvent)
    [conversation_done] = only(call_events, ConversationItemDone)
    assert item_done.item == conversation_done.item
    assert isinstance(item_done.item, RealtimeConversationItemFunctionCall)
    assert item_done.item.arguments == arguments_done.arguments
    response_done = call_events[-1]
    assert isinstance(response_done, ResponseDoneEvent) and response_done.response.status == "completed"
    assert response_done.response.output == [item_done.item]

    call_id = arguments_done.call_id
    await realtime.conversation.item.create(item={"type": "function_call_output", "call_id": call_id, "output": "21"})
    [output_added] = only(await read_typed_until(realtime, frames, ConversationItemDone), ConversationItemAdded)
    assert isinstance(output_added.item, RealtimeConversationItemFunctionCallOutput)
    assert (output_added.item.call_id, output_added.item.output) == (call_id, "21")

    await realtime.response.create(response={"max_output_tokens": 12})
    answer = await read_typed_until(realtime, frames, ResponseDoneEvent)
    text = "".join(delta.delta for delta in only(answer, ResponseTextDeltaEvent))
    final = answer[-1].response
    assert final.status in ("completed", "incomplete")
    [message] = final.output
    assert isinstance(message, RealtimeConversationItemAssistantMessage)
    assert text and message.content[0].text == text
    assert final.usage.input_token_details.cached_tokens > 0, "the call and its output stay in the cache"
