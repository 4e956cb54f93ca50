"""Resume: a conversation whose socket drops waits `resume_grace` for a connection that names it
(`?aural.resume=<session id>`); that connection takes it over with its items, cache and running response.
Raw `websockets` clients (they read the `aural.session.resumed` extension, which openai's types lack) and the
real SDK, which reconnects and resumes by itself, against the server with the fake engine."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from websockets.asyncio.client import connect

import aural.sdk
from aural.protocols.limits import Limits
from aural.runtime.server.timeouts import Timeouts
from aural.sdk import AuralConnectionError, AuralServerError, AuralSessionResumed
from tests.support.fake_engine import DEFAULT_TEXT, FakeEngine, Reply
from tests.support.resume import recv, text_turn, until_type, url

from .conftest import Serve

POLLS = 500  # a bound on waiting for background work, never a timing assertion


async def sessions(http: TestClient[Any, Any]) -> int:
    async with http.get("/healthz") as reply:
        count: int = (await reply.json())["sessions"]
    return count


async def test_a_dropped_conversation_is_taken_over_with_its_items_and_cache(serve: Serve, fake: FakeEngine) -> None:
    http = await serve(timeouts=Timeouts(resume_grace=30))
    first = await connect(url(http))
    session_id = (await recv(first))["session"]["id"]
    turn = await text_turn(first, "remember me")
    first.transport.abort()  # the network goes: no close frame

    second = await connect(url(http, session_id))
    created, resumed = await recv(second), await recv(second)
    assert created["type"] == "session.created" and created["session"]["id"] == session_id
    user_item = turn[0]["item"]["id"]
    assistant_item = next(event["item"]["id"] for event in turn if event["type"] == "response.output_item.done")
    assert resumed == {**resumed, "type": "aural.session.resumed", "item_ids": [user_item, assistant_item]}
    assert resumed.get("response_id") is None
    await text_turn(second, "and now?")
    assert len(fake.sessions) == 1 and not fake.sessions[0].closed, "one engine session: its cache lives on"
    last = fake.of_kind("generate")[-1]
    assert [message.role for message in last.conversation] == ["user", "assistant", "user"]
    assert await sessions(http) == 1
    await second.close()


async def test_a_response_running_at_the_drop_goes_on_and_ends_on_the_new_connection(
    serve: Serve, fake: FakeEngine
) -> None:
    http = await serve(timeouts=Timeouts(resume_grace=30))
    fake.script(Reply(("a",), endless=True, pause=0.01))
    first = await connect(url(http))
    session_id = (await recv(first))["session"]["id"]
    await first.send(json.dumps({"type": "response.create"}))
    response_id = (await until_type(first, "response.output_text.delta"))[0]["response"]["id"]
    first.transport.abort()

    second = await connect(url(http, session_id))
    await recv(second)
    resumed = await recv(second)
    assert resumed["response_id"] == response_id
    assert (await recv(second))["type"] == "response.output_text.delta", "its deltas stream to the new socket"
    await second.send(json.dumps({"type": "response.cancel"}))
    done = (await until_type(second, "response.done"))[-1]
    assert done["response"]["id"] == response_id and done["response"]["status"] == "cancelled"
    await second.close()


async def test_a_send_to_a_socket_lost_mid_stream_leaves_the_response_running_for_the_resume(
    serve: Serve, fake: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Deltas back to back: the next send after the drop meets aiohttp's closing transport (ConnectionResetError)
    before the read loop sees the loss. Found by `bench.soak`: the stream stopped there, so the resumed client
    waited for a `response.done` that never came."""
    http = await serve(timeouts=Timeouts(resume_grace=30))
    fake.script(Reply(("a",), endless=True))
    first = await connect(url(http))
    session_id = (await recv(first))["session"]["id"]
    await first.send(json.dumps({"type": "response.create"}))
    await until_type(first, "response.output_text.delta")
    first.transport.abort()

    second = await connect(url(http, session_id))
    assert [(await recv(second))["type"], (await recv(second))["type"]] == ["session.created", "aural.session.resumed"]
    await until_type(second, "response.output_text.delta")
    await second.send(json.dumps({"type": "response.cancel"}))
    assert (await until_type(second, "response.done"))[-1]["response"]["status"] == "cancelled"
    await second.close()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_clean_close_or_the_end_of_the_grace_ends_the_conversation(serve: Serve, fake: FakeEngine) -> None:
    http = await serve(timeouts=Timeouts(resume_grace=0.2))
    closed = await connect(url(http))
    closed_id = (await recv(closed))["session"]["id"]
    await closed.close()
    dropped = await connect(url(http))
    dropped_id = (await recv(dropped))["session"]["id"]
    dropped.transport.abort()
    for _ in range(POLLS):
        if await sessions(http) == 0:
            break
        await asyncio.sleep(0.01)
    assert await sessions(http) == 0 and all(session.closed for session in fake.sessions)
    for gone in (closed_id, dropped_id, "sess_never"):
        late = await connect(url(http, gone))
        error = await recv(late)
        assert error["type"] == "error" and error["error"]["code"] == "session_not_found"
        assert error["error"]["param"] == "aural.resume"
        await late.wait_closed()
        assert late.close_code == 1008


async def test_a_resume_takes_over_from_a_socket_the_server_still_holds(serve: Serve) -> None:
    http = await serve(timeouts=Timeouts(resume_grace=30))
    stale = await connect(url(http))  # a half-open connection: the server has not noticed the loss yet
    session_id = (await recv(stale))["session"]["id"]
    fresh = await connect(url(http, session_id))
    assert [(await recv(fresh))["type"], (await recv(fresh))["type"]] == ["session.created", "aural.session.resumed"]
    await stale.wait_closed()
    assert stale.close_code == 1008
    assert (await text_turn(fresh, "hi"))[-1]["response"]["status"] == "completed"
    await fresh.close()


@pytest.mark.parametrize("dropped_while", ["reading", "sending"])
async def test_the_sdk_reconnects_and_resumes_by_itself(serve: Serve, fake: FakeEngine, dropped_while: str) -> None:
    http = await serve(timeouts=Timeouts(resume_grace=30))
    async with aural.sdk.connect(url(http)) as conn:
        await conn.add_message("user", text="one")
        assert await conn.create_response().collect() == DEFAULT_TEXT
        session_id = conn.session.id if conn.session else None
        conn._socket.ws.transport.abort()  # the network goes under the SDK
        if dropped_while == "sending":
            await conn.add_message("user", text="sent on the new connection")
        while not isinstance(event := await conn.recv(), AuralSessionResumed):
            assert event.type == "rate_limits.updated", event
        assert conn.session is not None and conn.session.id == session_id
        assert await conn.create_response().collect() == DEFAULT_TEXT
    assert len(fake.sessions) == 1, "one conversation throughout"
    texts = [message.parts for message in fake.of_kind("generate")[-1].conversation if message.role == "user"]
    assert texts == ([("one",), ("sent on the new connection",)] if dropped_while == "sending" else [("one",)])


async def test_the_sdk_says_so_when_the_conversation_is_gone(serve: Serve) -> None:
    http = await serve(timeouts=Timeouts(resume_grace=None))
    async with aural.sdk.connect(url(http), resume=5) as conn:
        await conn.recv()
        conn._socket.ws.transport.abort()
        with pytest.raises(AuralServerError) as refused:
            await conn.recv()
        assert refused.value.code == "session_not_found"


async def test_a_close_the_server_sends_is_not_a_drop_to_resume_from(serve: Serve) -> None:
    """A message over the size limit: the server closes with 1009 and forgets the conversation; the SDK says
    so instead of resuming and sending the same message again, round after round."""
    http = await serve(limits=Limits(max_message_bytes=4096), timeouts=Timeouts(resume_grace=30))
    async with aural.sdk.connect(url(http), resume=5) as conn:
        await conn.recv()
        await conn.add_message("user", text="x" * 8192)
        with pytest.raises(AuralConnectionError, match="1009"):
            await conn.recv()
    for _ in range(POLLS):
        if await sessions(http) == 0:
            break
        await asyncio.sleep(0.01)
    assert await sessions(http) == 0, "no conversation kept for a resume"
