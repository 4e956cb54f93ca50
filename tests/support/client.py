"""A raw realtime client for tests, and the checks and turns they share (the e2e tests over `websockets` or the
official `openai` client, the server tests over aiohttp's test client).

`RawClient` reads raw frames, exactly as a non-Python client would, and checks every one: valid for the
official `openai` package's own server event types (strict pydantic validation, not the client's lenient
parsing), parsed by Pipecat's own OpenAI Realtime event models (which reject an event missing any field
they require), and carrying an `event_id` never seen before on that connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from openai.types.realtime import RealtimeServerEvent
from pipecat.services.openai.realtime.events import parse_server_event as pipecat_parse
from pydantic import BaseModel, TypeAdapter
from websockets.asyncio.client import ClientConnection

from aural.protocols.models import AudioFormat

Event = dict[str, Any]

RECV_TIMEOUT = 30.0
"""A guard against hangs only (a reply takes milliseconds); never asserted on."""

OPENAI_SERVER_EVENT: TypeAdapter[RealtimeServerEvent] = TypeAdapter(RealtimeServerEvent)


GA_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
AURAL_AUDIO_FORMAT: TypeAdapter[AudioFormat] = TypeAdapter(AudioFormat)


def validate_openai(raw: str | bytes) -> RealtimeServerEvent:
    """Validate one raw frame strictly against the `openai` package's server event union, and parse
    it as Pipecat does (Pipecat skips types it has no model for; others must parse), except a session
    whose `tool_choice` names a function: Pipecat's types know only the string choices, all that a
    Pipecat client can set.

    A session's input format echoes what the client set, and Aural's documented extension of that field
    (`FIELD_EXTENSIONS`: any PCM rate, compressed streams) is not in openai's types: such a format is
    validated strictly against Aural's own `AudioFormat`, and the rest of the event against openai's (the
    event returned then holds GA PCM in its place).
    """
    frame = json.loads(raw)
    input_audio = frame.get("session", {}).get("audio", {}).get("input", {})
    fmt = input_audio.get("format")
    if isinstance(fmt, dict) and (fmt.get("type") not in GA_FORMATS or fmt.get("rate", 24000) != 24000):
        AURAL_AUDIO_FORMAT.validate_python(fmt, strict=True)
        input_audio["format"] = {"type": "audio/pcm", "rate": 24000}
        raw = json.dumps(frame)
    event = OPENAI_SERVER_EVENT.validate_json(raw, strict=True)
    session = getattr(event, "session", None)
    if not isinstance(getattr(session, "tool_choice", None), BaseModel):
        pipecat_parse(raw)
    return event


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- raw client ------------------------------------------------------------------------------------

ReceiveFrame = Callable[[], Awaitable[str | bytes]]
SendFrame = Callable[[str | bytes], Awaitable[None]]
Disconnect = Callable[[bool], Awaitable[None]]


@dataclass
class RawClient:
    """One realtime connection, read frame by frame as JSON; remembers every event it read.

    `websocket` builds one over a `websockets` connection, `aiohttp` over aiohttp's client; the openai tests
    build one over the official client's raw frames.
    """

    receive_frame: ReceiveFrame
    send_frame: SendFrame
    disconnect: Disconnect | None = None
    """`await disconnect(abrupt)`: a clean close, or dropping the TCP connection without one."""
    subprotocol: str | None = None
    events: list[Event] = field(default_factory=list)

    @classmethod
    def websocket(cls, ws: ClientConnection) -> RawClient:
        async def receive_text() -> str | bytes:
            frame = await ws.recv()
            assert isinstance(frame, str), "server events are text frames"
            return frame

        async def disconnect(abrupt: bool) -> None:
            if abrupt:
                ws.transport.abort()
            await ws.close()

        return cls(receive_text, ws.send, disconnect, ws.subprotocol)

    @classmethod
    def aiohttp(cls, ws: ClientWebSocketResponse) -> RawClient:
        async def receive_text() -> str | bytes:
            message = await ws.receive()
            assert message.type == WSMsgType.TEXT, f"server events are text frames, not {message.type!r}"
            text: str = message.data
            return text

        async def send(frame: str | bytes) -> None:
            await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))

        async def disconnect(abrupt: bool) -> None:
            await ws.close()

        return cls(receive_text, send, disconnect, ws.protocol)

    async def send(self, event: Event) -> None:
        await self.send_frame(json.dumps(event))

    async def recv(self) -> Event:
        """The next event, checked against openai's types and for a fresh `event_id`.

        `rate_limits.updated`, which must directly follow a `response.done`, is checked, kept in
        `events` and passed over, as clients that do not track the context's room do.
        """
        while True:
            async with asyncio.timeout(RECV_TIMEOUT):
                raw = await self.receive_frame()
            parsed = validate_openai(raw)
            event: Event = json.loads(raw)
            assert parsed.type == event["type"]
            assert event["event_id"] not in {seen["event_id"] for seen in self.events}, "event_id reused"
            self.events.append(event)
            if event["type"] != "rate_limits.updated":
                return event
            assert self.events[-2]["type"] == "response.done", "rate_limits.updated follows a response.done"

    async def expect(self, event_type: str) -> Event:
        """The next event, which must be of `event_type`."""
        event = await self.recv()
        assert event["type"] == event_type, event
        return event

    async def recv_until(self, event_type: str) -> list[Event]:
        """Events up to and including the next one of `event_type`."""
        received = [await self.recv()]
        while received[-1]["type"] != event_type:
            received.append(await self.recv())
        return received


# --- turns -----------------------------------------------------------------------------------------


def collapsed_types(events: list[Event]) -> list[str]:
    """Event types, with each run of one type (deltas) counted once and `rate_limits.updated` left out, as
    `aural.protocols.sequences.server_types` lists a reference sequence."""
    kinds = (event["type"] for event in events if event["type"] != "rate_limits.updated")
    return [event_type for event_type, _ in groupby(kinds)]


@dataclass(frozen=True)
class Turn:
    """The events of one response, from `response.created` to `response.done`."""

    events: list[Event]

    def of_type(self, event_type: str) -> list[Event]:
        return [event for event in self.events if event["type"] == event_type]

    def one(self, event_type: str) -> Event:
        [event] = self.of_type(event_type)
        return event

    @property
    def response(self) -> Event:
        response: Event = self.events[-1]["response"]
        return response

    @property
    def response_id(self) -> str:
        response_id: str = self.response["id"]
        return response_id

    @property
    def streamed_text(self) -> str:
        return "".join(event["delta"] for event in self.of_type("response.output_text.delta"))

    @property
    def cached_tokens(self) -> int:
        cached: int = self.response["usage"]["input_token_details"]["cached_tokens"]
        return cached


def output_text(response: Event) -> str:
    """The text of the assistant message in a `response` object's output."""
    [item] = response["output"]
    assert item["type"] == "message" and item["role"] == "assistant"
    [part] = item["content"]
    assert part["type"] == "output_text"
    text: str = part["text"]
    return text


def assert_consistent(turn: Turn) -> None:
    """The streamed deltas add up to the `output_text.done` text and to the final item's text."""
    assert turn.events[0]["type"] == "response.created"
    assert turn.events[-1]["type"] == "response.done"
    assert turn.streamed_text, "the reply has text"
    assert turn.one("response.output_text.done")["text"] == turn.streamed_text
    assert output_text(turn.response) == turn.streamed_text
    assert all(event.get("response_id", turn.response_id) == turn.response_id for event in turn.events)


async def create_response(client: RawClient, max_tokens: int = 12, event_id: str | None = None) -> None:
    event: Event = {"type": "response.create", "response": {"max_output_tokens": max_tokens}}
    if event_id is not None:
        event["event_id"] = event_id
    await client.send(event)


async def read_response(client: RawClient) -> Turn:
    """Read up to `response.created` (skipping earlier events), then the response to its `response.done`."""
    await client.recv_until("response.created")
    return Turn([client.events[-1], *await client.recv_until("response.done")])


async def add_text(client: RawClient, text: str) -> None:
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await client.send({"type": "conversation.item.create", "item": item})


async def commit_audio(client: RawClient, pcm: bytes) -> None:
    await client.send({"type": "input_audio_buffer.append", "audio": b64(pcm)})
    await client.send({"type": "input_audio_buffer.commit"})


async def text_turn(client: RawClient, text: str, max_tokens: int = 12) -> Turn:
    await add_text(client, text)
    await create_response(client, max_tokens)
    return await read_response(client)


async def audio_turn(client: RawClient, pcm: bytes, max_tokens: int = 12) -> Turn:
    await commit_audio(client, pcm)
    await create_response(client, max_tokens)
    return await read_response(client)


def response_events(client: RawClient, response_id: str) -> Turn:
    """The events a client has read that belong to one response (by `response_id` or `response.id`)."""

    def belongs(event: Event) -> bool:
        return response_id in (event.get("response_id"), event.get("response", {}).get("id"))

    return Turn([event for event in client.events if belongs(event)])


async def cancel(client: RawClient, response_id: str, *, named: bool = True) -> Turn:
    """Cancel a running response (by its id, or as the current one) and read on to its `response.done`;
    returns the response's events."""
    event: Event = {"type": "response.cancel"}
    if named:
        event["response_id"] = response_id
    await client.send(event)
    await client.recv_until("response.done")
    return response_events(client, response_id)


# --- errors ----------------------------------------------------------------------------------------


def assert_error(event: Event, code: str, *, param: str | None = None, event_id: str | None = None) -> None:
    """An `error` event whose `error` object names the code, the offending field and client event."""
    assert event["type"] == "error"
    detail = event["error"]
    assert isinstance(detail, dict), "`error` is an object, never a string"
    assert detail["type"] == "invalid_request_error"
    assert detail["code"] == code
    assert isinstance(detail["message"], str) and detail["message"]
    assert detail.get("param") == param
    assert detail.get("event_id") == event_id


async def assert_turn_works(client: RawClient) -> Turn:
    """A text turn runs normally: exactly the user item's events, then a whole, consistent response."""
    first = len(client.events)
    turn = await text_turn(client, "Hello, are you there?")
    before = client.events[first : len(client.events) - len(turn.events)]
    announced = [event["type"] for event in before if event["type"] != "rate_limits.updated"]
    assert announced == ["conversation.item.added", "conversation.item.done"]
    assert turn.response["status"] in ("completed", "incomplete")
    assert_consistent(turn)
    return turn
