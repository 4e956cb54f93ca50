"""End-to-end fixtures: the real runtime (built-in tiny model) on a loopback port, and a raw client.

The engine (`tests/conftest.py`) loads once per run; each test gets its own server (cheap) so that no session or
conversation state leaks between tests. `RawClient` reads raw frames (from `websockets`, exactly as a
non-Python client would, or from the openai client) and checks every one: valid for the official
`openai` package's own server event types (strict pydantic validation, not the client's lenient
parsing), parsed by Pipecat's own OpenAI Realtime event models (which reject an event missing any
field they require), and carrying an `event_id` never seen before on that connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from openai.types.realtime import RealtimeServerEvent
from pipecat.services.openai.realtime.events import parse_server_event as pipecat_parse
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.server.app import create_app
from aural.runtime.tools import ServerTools
from aural.sdk.audio import read_audio_file

Event = dict[str, Any]

MODEL = "gpt-realtime"
SAMPLE_WAV = Path(__file__).resolve().parents[2] / "examples" / "sample.wav"
RECV_TIMEOUT = 30.0
"""A guard against hangs only (a reply of the tiny model takes milliseconds); never asserted on."""
RUNAWAY_PROMPT = "x" * 100
"""A prompt on which the tiny model's greedy decoding does not stop for thousands of tokens, so that
its response is still running when the test acts on it (cancel, a second create, a disconnect)."""
RUNAWAY_TOKENS = 4096
WIRE_RATE = 24000

OPENAI_SERVER_EVENT: TypeAdapter[RealtimeServerEvent] = TypeAdapter(RealtimeServerEvent)


def validate_openai(raw: str | bytes) -> RealtimeServerEvent:
    """Validate one raw frame strictly against the `openai` package's server event union, and parse
    it as Pipecat does (Pipecat skips types it has no model for; others must parse)."""
    pipecat_parse(raw)
    return OPENAI_SERVER_EVENT.validate_json(raw, strict=True)


# --- server ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where the test's runtime listens."""

    port: int

    @property
    def realtime_url(self) -> str:
        """The websocket URL without the query."""
        return f"ws://127.0.0.1:{self.port}/v1/realtime"

    def ws_url(self, model: str = MODEL) -> str:
        return f"{self.realtime_url}?model={model}"

    def http_url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def server(engine: TransformersEngine, request: pytest.FixtureRequest) -> AsyncIterator[Endpoint]:
    """The runtime on a free loopback port, run as `aural serve` runs it (an AppRunner, so without the
    handler cancellation on disconnect that aiohttp's test server adds), with the server-side tools of
    the test module's `SERVER_TOOLS` if it has one. At the end, once the test's clients have closed,
    every session must have been freed."""
    tools: ServerTools | None = getattr(request.module, "SERVER_TOOLS", None)
    runner = web.AppRunner(create_app(engine, model_names=[MODEL], server_tools=tools))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        endpoint = Endpoint(runner.addresses[0][1])
        yield endpoint
        await wait_for_sessions(endpoint, 0)
    finally:
        await runner.cleanup()


async def get_json(endpoint: Endpoint, path: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(endpoint.http_url(path)) as reply:
        assert reply.status == 200
        return await reply.json()


async def open_sessions(endpoint: Endpoint) -> int:
    """The number of live conversations, from `/healthz`."""
    health = await get_json(endpoint, "/healthz")
    count = health["sessions"]
    assert isinstance(count, int)
    return count


async def wait_for_sessions(endpoint: Endpoint, expected: int, *, polls: int = 500) -> None:
    """Poll `/healthz` until it reports `expected` sessions, a bounded number of times."""
    for _ in range(polls):
        if await open_sessions(endpoint) == expected:
            return
        await asyncio.sleep(0.01)
    assert await open_sessions(endpoint) == expected


# --- audio -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def speech_pcm() -> bytes:
    """examples/sample.wav (a spoken utterance, about 2.2 s) as PCM16 mono at 24 kHz, the GA wire format."""
    return read_audio_file(SAMPLE_WAV, rate=WIRE_RATE)


@pytest.fixture(scope="session")
def speech_samples() -> npt.NDArray[np.float32]:
    """The same utterance as float32 samples at 16 kHz."""
    pcm = np.frombuffer(read_audio_file(SAMPLE_WAV, rate=16000), dtype="<i2")
    return pcm.astype(np.float32) / np.float32(32768.0)


def pcm_ms(pcm: bytes, start_ms: int, end_ms: int) -> bytes:
    """A slice of 24 kHz PCM16 audio, in milliseconds."""
    per_ms = 2 * WIRE_RATE // 1000
    return pcm[start_ms * per_ms : end_ms * per_ms]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --- raw client ------------------------------------------------------------------------------------

ReceiveFrame = Callable[[], Awaitable[str | bytes]]
SendFrame = Callable[[str | bytes], Awaitable[None]]
Disconnect = Callable[[bool], Awaitable[None]]


@dataclass
class RawClient:
    """One realtime connection, read frame by frame as JSON; remembers every event it read.

    `websocket` builds one over a `websockets` connection; the openai tests build one over the
    official client's raw frames.
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


Connect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
async def connect(server: Endpoint) -> AsyncIterator[Connect]:
    """`await connect(model=MODEL, **websockets_options)`: a raw client, closed at the end of the test."""
    async with AsyncExitStack() as stack:

        async def open_client(model: str = MODEL, **options: Any) -> RawClient:
            ws = await stack.enter_async_context(ws_connect(server.ws_url(model), **options))
            return RawClient.websocket(ws)

        yield open_client


async def open_session(connect: Connect) -> RawClient:
    """A new raw client, past `session.created`."""
    client = await connect()
    await client.expect("session.created")
    return client


@pytest.fixture
async def session(connect: Connect) -> RawClient:
    return await open_session(connect)


# --- turns -----------------------------------------------------------------------------------------


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


async def start_runaway(client: RawClient) -> str:
    """Start a long response and wait for its first text; returns the response id."""
    await add_text(client, RUNAWAY_PROMPT)
    await create_response(client, RUNAWAY_TOKENS)
    created = (await client.recv_until("response.created"))[-1]
    await client.recv_until("response.output_text.delta")
    response_id: str = created["response"]["id"]
    return response_id


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
