"""End-to-end fixtures: the real runtime (built-in tiny model) on a loopback port, and raw clients of it
(`tests.support.client`, which checks every frame against openai's and Pipecat's event types); for SDK tests,
`sdk_connect`, which runs each test twice: over that websocket, and with the runtime in the test's own process.

The engine (`tests/conftest.py`) loads once per run; each test gets its own server (cheap) so that no session or
conversation state leaks between tests.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect

from aural.runtime.engine.qwen2_audio import jobs
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.server.app import create_app
from aural.runtime.server.dev_tls import DevCertificates, ensure_dev_certificates
from aural.runtime.server.local import LocalRuntime
from aural.runtime.server.run import tls_context
from aural.sdk import Connection
from aural.sdk import connect as sdk_open
from aural.sdk.audio import read_audio_file
from aural.sdk.tools import Tools
from tests.support.client import RawClient, add_text, create_response

MODEL = "gpt-realtime"
SAMPLE_WAV = Path(__file__).resolve().parents[2] / "examples" / "sample.wav"
RUNAWAY_PROMPT = "x" * 100
"""A prompt on which the tiny model's greedy decoding does not stop for thousands of tokens, so that
its response is still running when the test acts on it (cancel, a second create, a disconnect)."""
RUNAWAY_TOKENS = 4096
WIRE_RATE = 24000
CALL_CAP = 64
"""The engine's per-call token limit in the tests that reach it (`call_cap`; at 1024 they would take minutes)."""

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


def app_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The `create_app` options of a test: the server-side tools of its module's `SERVER_TOOLS` if it has one,
    and the options of its `app` mark."""
    tools: Tools | None = getattr(request.module, "SERVER_TOOLS", None)
    marked = request.node.get_closest_marker("app")
    return {"model_names": [MODEL], "server_tools": tools, **(marked.kwargs if marked else {})}


@pytest.fixture
async def server(engine: TransformersEngine, request: pytest.FixtureRequest) -> AsyncIterator[Endpoint]:
    """The runtime on a free loopback port, run as `aural serve` runs it (an AppRunner, so without the
    handler cancellation on disconnect that aiohttp's test server adds), with the test's `app_options`. At the
    end, once the test's clients have closed, every session must have been freed."""
    async with serving(engine, request) as endpoint:
        yield endpoint


@asynccontextmanager
async def serving(engine: TransformersEngine, request: pytest.FixtureRequest) -> AsyncIterator[Endpoint]:
    """The `server` fixture's runtime."""
    runner = web.AppRunner(create_app(engine, **app_options(request)))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        endpoint = Endpoint(runner.addresses[0][1])
        yield endpoint
        await wait_for_sessions(endpoint, 0)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def serve_wss(engine: TransformersEngine, cert: Path, key: Path) -> AsyncIterator[int]:
    """The runtime on a free loopback port, serving TLS with a PEM certificate and key; yields the port."""
    runner = web.AppRunner(create_app(engine, model_names=[MODEL]))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_context(str(cert), str(key))).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


@pytest.fixture
async def dev_wss(engine: TransformersEngine, tmp_path: Path) -> AsyncIterator[tuple[int, DevCertificates]]:
    """The runtime served as `aural serve --tls-self-signed DIR` serves it: its port and DIR's files."""
    files = ensure_dev_certificates(tmp_path / "certs", "127.0.0.1")
    async with serve_wss(engine, files.cert, files.key) as port:
        yield port, files


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


@pytest.fixture
def call_cap(monkeypatch: pytest.MonkeyPatch) -> int:
    """The engine's limit of tokens per function call, lowered to `CALL_CAP` for the test."""
    monkeypatch.setattr(jobs, "CALL_TOKENS", CALL_CAP)
    return CALL_CAP


# --- SDK -------------------------------------------------------------------------------------------

SdkConnect = Callable[..., Connection]
"""`sdk_connect(**connect_options)`: `aural.sdk.connect` to the test's runtime, model `MODEL`, not opened yet."""


@pytest.fixture(params=["websocket", "embedded"])
async def sdk_connect(request: pytest.FixtureRequest, engine: TransformersEngine) -> AsyncIterator[SdkConnect]:
    """The SDK's way to the test's runtime, one test run each: over a websocket to the `server` fixture, or
    embedded (`aural.runtime.local`'s `LocalRuntime` on the same engine, with the same `app_options`, in this
    process). At the end every conversation must have been freed, as for `server`."""
    if request.param == "websocket":
        async with serving(engine, request) as endpoint:
            yield functools.partial(sdk_open, endpoint.realtime_url, model=MODEL)
        return
    runtime = LocalRuntime.serving(engine, **app_options(request))
    try:
        yield functools.partial(sdk_open, runtime=runtime, model=MODEL)
        for _ in range(500):
            if runtime.sessions == 0:
                break
            await asyncio.sleep(0.01)
        assert runtime.sessions == 0
    finally:
        await runtime.close()


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


# --- raw client ------------------------------------------------------------------------------------

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


async def start_runaway(client: RawClient) -> str:
    """Start a long response and wait for its first text; returns the response id."""
    await add_text(client, RUNAWAY_PROMPT)
    await create_response(client, RUNAWAY_TOKENS)
    created = (await client.recv_until("response.created"))[-1]
    await client.recv_until("response.output_text.delta")
    response_id: str = created["response"]["id"]
    return response_id
