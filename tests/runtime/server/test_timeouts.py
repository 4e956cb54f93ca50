"""Silent connections let go of their slots: the first-event and idle limits, and the heartbeat's dead peers.

The limits are a fraction of a second here; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import ClientWebSocketResponse, WSCloseCode, WSMsgType
from aiohttp.test_utils import TestClient

from aural.runtime.server.timeouts import Timeouts
from tests.support.client import RawClient, add_text, assert_error, create_response, read_response, text_turn
from tests.support.fake_engine import FakeEngine, Reply

from .conftest import Serve

POLLS = 500  # a bound on waiting for background work, never a timing assertion


async def sessions(http: TestClient[Any, Any]) -> int:
    async with http.get("/healthz") as reply:
        count: int = (await reply.json())["sessions"]
        return count


async def until_no_sessions(http: TestClient[Any, Any]) -> None:
    for _ in range(POLLS):
        if await sessions(http) == 0:
            return
        await asyncio.sleep(0.01)
    assert await sessions(http) == 0


async def closed_with(ws: ClientWebSocketResponse, code: int) -> None:
    message = await ws.receive()
    assert (message.type, message.data) == (WSMsgType.CLOSE, code)


async def test_a_connection_that_sends_no_event_is_told_and_closed(serve: Serve, fake: FakeEngine) -> None:
    http = await serve(timeouts=Timeouts(first_event=0.1, idle=60))
    ws = await http.ws_connect("/v1/realtime?model=fake")
    client = RawClient.aiohttp(ws)
    await client.expect("session.created")
    error = await client.expect("error")
    assert error["error"]["code"] == "idle_timeout" and "No event arrived" in error["error"]["message"]
    await closed_with(ws, WSCloseCode.OK)
    await until_no_sessions(http)
    assert fake.sessions[0].closed, "the engine session is freed"


async def test_an_idle_connection_is_closed_but_a_slow_response_is_not_idle(serve: Serve, fake: FakeEngine) -> None:
    fake.script(Reply(("Slow", " but sure."), pause=0.3))  # silent for longer than the idle limit
    http = await serve(timeouts=Timeouts(first_event=None, idle=0.2))
    ws = await http.ws_connect("/v1/realtime?model=fake")
    client = RawClient.aiohttp(ws)
    await client.expect("session.created")
    await add_text(client, "Take your time.")
    await create_response(client)
    turn = await read_response(client)
    assert turn.response["status"] == "completed" and turn.streamed_text == "Slow but sure."

    error = await client.expect("error")
    assert_error(error, "idle_timeout")
    assert "idle for 0.2 s" in error["error"]["message"]
    await closed_with(ws, WSCloseCode.OK)
    await until_no_sessions(http)


async def test_a_connection_that_keeps_talking_stays(serve: Serve) -> None:
    http = await serve(timeouts=Timeouts(first_event=1.2, idle=1.2))
    client = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    await client.expect("session.created")
    for _ in range(3):  # together longer than the limit, each well within it
        await asyncio.sleep(0.5)
        await text_turn(client, "Still here.")
    assert await sessions(http) == 1


async def test_a_peer_that_answers_no_ping_is_dropped(serve: Serve, fake: FakeEngine) -> None:
    http = await serve(timeouts=Timeouts(heartbeat=0.1, first_event=None, idle=None, resume_grace=None))
    ws = await http.ws_connect("/v1/realtime?model=fake", autoping=False)  # never reads: never answers a ping
    await until_no_sessions(http)
    assert fake.sessions[0].closed
    await ws.close()
