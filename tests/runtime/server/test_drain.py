"""Graceful shutdown: running responses finish (or are cancelled at the drain timeout), every client gets its
`response.done` and then a 1001 close, nothing new gets in, and a real server process stopped by SIGTERM exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientWebSocketResponse, WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from aural.runtime.server.app import SESSIONS
from aural.runtime.server.drain import GOING_AWAY, LIFECYCLE, drain
from tests.support.client import RawClient, add_text, create_response
from tests.support.fake_engine import FakeEngine, Reply

from .conftest import Serve

ROOT = Path(__file__).resolve().parents[3]
GUARD = 30.0  # a bound against hangs only, never asserted on


async def open_client(http: TestClient[Any, Any]) -> tuple[ClientWebSocketResponse, RawClient]:
    ws = await http.ws_connect("/v1/realtime?model=fake")
    client = RawClient.aiohttp(ws)
    await client.expect("session.created")
    return ws, client


async def start_response(client: RawClient) -> None:
    await add_text(client, "Count.")
    await create_response(client, 4096)
    await client.recv_until("response.output_text.delta")


async def going_away(ws: ClientWebSocketResponse) -> None:
    """Read on to the close, which must be 1001 "server shutting down"; the last `response.done`'s
    `rate_limits.updated` may come first, nothing else."""
    message = await ws.receive()
    while message.type == WSMsgType.TEXT:
        assert json.loads(message.data)["type"] == "rate_limits.updated"
        message = await ws.receive()
    assert (message.type, message.data, message.extra) == (WSMsgType.CLOSE, WSCloseCode.GOING_AWAY, GOING_AWAY)


def start_drain(http: TestClient[Any, Any], grace: float) -> asyncio.Task[None]:
    app = http.app
    assert app is not None
    return asyncio.create_task(drain(app[LIFECYCLE], app[SESSIONS], grace))


async def test_a_running_response_finishes_then_every_socket_closes_1001(serve: Serve, fake: FakeEngine) -> None:
    fake.script(Reply(("One,", " two,", " three."), pause=0.05))
    http = await serve()
    ws, client = await open_client(http)
    quiet_ws, _ = await open_client(http)
    await start_response(client)

    draining = start_drain(http, grace=GUARD)
    await asyncio.sleep(0)
    async with http.get("/healthz") as reply:
        assert (reply.status, (await reply.json())["status"]) == (503, "draining")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect("/v1/realtime?model=fake")
    assert refused.value.status == 503

    rest = await client.recv_until("response.done")
    assert rest[-1]["response"]["status"] == "completed"
    assert "".join(event.get("delta", "") for event in client.events) == "One, two, three."
    await going_away(ws)
    await going_away(quiet_ws)
    await draining
    assert all(session.closed for session in fake.sessions), "every engine session is freed"


async def test_at_the_drain_timeout_a_response_is_cancelled_through_the_session(serve: Serve, fake: FakeEngine) -> None:
    fake.script(Reply(("Counting",), endless=True, pause=0.01))
    http = await serve()
    ws, client = await open_client(http)
    await start_response(client)

    draining = start_drain(http, grace=0.1)
    done = (await client.recv_until("response.done"))[-1]
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled"}, "no wire reason names a shutdown"
    await going_away(ws)
    await draining
    assert fake.sessions[0].generations[0].cancelled and fake.sessions[0].closed


@pytest.fixture
async def server_process() -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    """`run_app` in a process of its own, serving the fake engine (every reply endless), drain timeout 0.5 s;
    yields it once it listens, and its port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.fake_server", str(port), "0.5", cwd=ROOT, stderr=asyncio.subprocess.PIPE
    )
    try:
        await log_event(process, "serving")
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def log_event(process: asyncio.subprocess.Process, event: str) -> dict[str, Any]:
    """Read the process' JSON log lines up to the first of `event`."""
    assert process.stderr is not None
    async with asyncio.timeout(GUARD):
        while line := await process.stderr.readline():
            record: dict[str, Any] = json.loads(line)
            if record["event"] == event:
                return record
    raise AssertionError(f"the server ended without logging {event!r}")


async def test_sigterm_drains_a_real_server_process_which_exits_0(
    server_process: tuple[asyncio.subprocess.Process, int],
) -> None:
    process, port = server_process
    url = f"ws://127.0.0.1:{port}/v1/realtime?model=fake"
    async with ws_connect(url) as ws:
        client = RawClient.websocket(ws)
        await client.expect("session.created")
        await start_response(client)

        process.send_signal(signal.SIGTERM)
        assert (await log_event(process, "draining"))["conversations"] == 1
        with pytest.raises(ConnectionRefusedError):  # the listener is closed
            await asyncio.open_connection("127.0.0.1", port)
        done = (await client.recv_until("response.done"))[-1]
        assert done["response"]["status"] == "cancelled"
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # the response's rate_limits.updated, then the close
                assert json.loads(await ws.recv())["type"] == "rate_limits.updated"
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, GOING_AWAY)
    async with asyncio.timeout(GUARD):
        assert await process.wait() == 0
