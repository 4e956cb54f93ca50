"""Connecting: subprotocol negotiation, model names, and the HTTP endpoints next to the websocket."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

import aural.sdk
from tests.support.client import assert_error, assert_turn_works, text_turn

from .conftest import MODEL, Connect, Endpoint, get_json, open_session, open_sessions

pytestmark = pytest.mark.model

BROWSER_SUBPROTOCOLS = [Subprotocol("realtime"), Subprotocol("openai-insecure-api-key.abc")]


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(BROWSER_SUBPROTOCOLS, "realtime"), (None, None)],
    ids=["browser-style", "none"],
)
async def test_subprotocol_is_echoed_when_offered_and_never_required(
    connect: Connect, offered: list[Subprotocol] | None, chosen: str | None
) -> None:
    client = await connect(subprotocols=offered)
    assert client.subprotocol == chosen
    await client.expect("session.created")
    await assert_turn_works(client)


async def test_unknown_model_is_refused_with_an_error_then_closed(server: Endpoint, connect: Connect) -> None:
    client = await connect(model="no-such-model")
    error = await client.expect("error")
    assert_error(error, "model_not_found", param="model")
    assert MODEL in error["error"]["message"], "the error names the models served"
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert await open_sessions(server) == 0


async def test_healthz_counts_sessions_and_reports_the_kv_pool(server: Endpoint, connect: Connect) -> None:
    health = await get_json(server, "/healthz")
    pool = health.pop("kv_pool")
    assert health == {"status": "ok", "model": "tiny", "sessions": 0}
    assert pool["blocks_used"] == 0 and pool["blocks_free"] == pool["blocks_total"] > 0
    assert pool["conversations_resident"] == pool["conversations_offloaded"] == 0
    client = await open_session(connect)
    assert await open_sessions(server) == 1
    await text_turn(client, "Hello there.")
    pool = (await get_json(server, "/healthz"))["kv_pool"]
    assert pool["blocks_used"] > 0 and pool["conversations_resident"] == 1, "the conversation's cache stays resident"


async def test_models_lists_the_served_names(server: Endpoint) -> None:
    listing = await get_json(server, "/v1/models")
    assert listing["object"] == "list"
    assert [model["id"] for model in listing["data"]] == ["tiny", MODEL]
    assert {model["object"] for model in listing["data"]} == {"model"}


async def test_sdk_reports_why_the_server_refused(server: Endpoint) -> None:
    """The SDK, which does not wait for `session.created`, still raises the server's reason."""
    async with aural.sdk.connect(server.realtime_url, model="no-such-model") as conn:
        with pytest.raises(aural.sdk.AuralServerError) as refused:
            for _ in range(50):  # the server's close arrives within the first few sends
                await conn.commit()
                await asyncio.sleep(0.01)
    assert refused.value.code == "model_not_found"
