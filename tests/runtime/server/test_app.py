"""The aiohttp application against the fake engine: health, model listing, refusals at the handshake, a
conversation freed the moment it ends."""

from __future__ import annotations

import asyncio
import gc
import weakref

from aural.runtime.engine.base import EngineHealth
from aural.runtime.server.app import SESSIONS
from aural.runtime.session.items import ConversationBounds
from tests.support.client import RawClient, add_text, assert_error, text_turn
from tests.support.fake_engine import FakeEngine

from .conftest import Serve


async def test_healthz_reports_the_engines_health_and_the_sessions(serve: Serve, fake: FakeEngine) -> None:
    http = await serve()
    async with http.get("/healthz") as reply:
        assert await reply.json() == {"status": "ok", "model": "fake", "sessions": 0}
    fake.state = EngineHealth("degraded", "The device is out of memory; replies are refused.")
    async with http.get("/healthz") as reply:
        assert reply.status == 200
        assert await reply.json() == {
            "status": "degraded",
            "model": "fake",
            "sessions": 0,
            "reason": "The device is out of memory; replies are refused.",
        }


async def test_models_lists_the_served_names(serve: Serve) -> None:
    http = await serve(model_names=["gpt-realtime"])
    async with http.get("/v1/models") as reply:
        assert [model["id"] for model in (await reply.json())["data"]] == ["fake", "gpt-realtime"]


async def test_an_unknown_model_and_a_full_server_are_refused(serve: Serve) -> None:
    http = await serve(max_sessions=1)
    unknown = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=nope"))
    assert_error(await unknown.expect("error"), "model_not_found", param="model")
    first = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    await first.expect("session.created")
    second = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    assert_error(await second.expect("error"), "session_limit_reached")


async def test_a_closed_conversation_is_freed_without_the_cycle_collector(serve: Serve, fake: FakeEngine) -> None:
    http = await serve()
    app = http.server.app
    gc.collect()
    gc.disable()  # what is still held once the connection ends is held by a cycle, or leaked
    try:
        client = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
        await client.expect("session.created")
        (driver,) = app[SESSIONS]
        held = [weakref.ref(driver), weakref.ref(driver._session)]
        del driver
        await text_turn(client, "hello")
        assert client.disconnect is not None
        await client.disconnect(False)
        for _ in range(200):  # the handler ends soon after the close
            if not app[SESSIONS]:
                break
            await asyncio.sleep(0.01)
        for _ in range(5):
            await asyncio.sleep(0)
        assert [ref() for ref in held] == [None, None]
    finally:
        gc.enable()


async def test_the_apps_conversation_bounds_hold_on_every_connection(serve: Serve) -> None:
    http = await serve(bounds=ConversationBounds(items=1))
    client = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    await client.expect("session.created")
    await add_text(client, "the first")
    await client.recv_until("conversation.item.done")
    await add_text(client, "one too many")
    assert_error(await client.expect("error"), "conversation_full", param="item")
