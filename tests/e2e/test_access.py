"""Keys and client secrets with real clients: the official `openai` package mints a client secret with a server
key (its own `client_secrets.create`), its realtime client and a browser-style raw client connect with it, and
Aural's SDK connects with a key; wrong keys and foreign origins are refused before the upgrade."""

from __future__ import annotations

import openai
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

import aural.sdk
from aural.runtime.server.access import Access
from tests.support.client import RawClient, assert_turn_works

from .conftest import MODEL, Connect, Endpoint, get_json

pytestmark = [pytest.mark.model, pytest.mark.app(access=Access(keys=("sk-aural-e2e",)))]

KEY = "sk-aural-e2e"
PINNED = {"type": "realtime", "instructions": "Answer in one short sentence.", "max_output_tokens": 24}


def openai_client(server: Endpoint, key: str) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key=key,
        base_url=server.http_url("/v1"),
        websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
        max_retries=0,
    )


async def test_the_openai_client_mints_a_secret_that_opens_conversations(server: Endpoint, connect: Connect) -> None:
    async with openai_client(server, KEY) as minting:
        secret = await minting.realtime.client_secrets.create(
            session=PINNED,  # type: ignore[arg-type]  # openai's TypedDict, given as a dict literal
            expires_after={"anchor": "created_at", "seconds": 120},
        )
    assert secret.value.startswith("ek_") and secret.session.type == "realtime"
    async with openai_client(server, secret.value) as client, client.realtime.connect(model=MODEL) as conn:
        created = await conn.recv()
        assert created.type == "session.created" and created.session.type == "realtime"
        assert created.session.instructions == PINNED["instructions"], "the pinned session is applied at connect"
    offered = [Subprotocol("realtime"), Subprotocol(f"openai-insecure-api-key.{secret.value}")]
    browser = await connect(subprotocols=offered)
    assert browser.subprotocol == "realtime"
    assert (await browser.expect("session.created"))["session"]["max_output_tokens"] == 24
    await assert_turn_works(browser)


async def test_a_wrong_key_is_refused_before_the_upgrade(server: Endpoint) -> None:
    async with openai_client(server, "sk-wrong") as client:
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.realtime.client_secrets.create()
    assert refused.value.code == "invalid_api_key"
    with pytest.raises(aural.sdk.AuralServerError) as failed:
        await aural.sdk.connect(server.realtime_url, model=MODEL, api_key="sk-wrong")
    assert failed.value.code == "invalid_api_key"
    assert (await get_json(server, "/healthz"))["sessions"] == 0, "health stays open"


async def test_the_sdk_connects_with_a_key(server: Endpoint) -> None:
    async with aural.sdk.connect(server.realtime_url, model=MODEL, api_key=KEY) as conn:
        reply = [delta async for delta in conn.create_response(max_output_tokens=4)]
    assert reply


async def test_a_foreign_origin_is_refused_and_a_local_one_admitted(server: Endpoint) -> None:
    key_header = {"Authorization": f"Bearer {KEY}"}
    with pytest.raises(InvalidStatus) as refused:
        await ws_connect(server.ws_url(), additional_headers=key_header, origin="https://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    async with ws_connect(server.ws_url(), additional_headers=key_header, origin="http://localhost:5173") as ws:  # type: ignore[arg-type]
        await RawClient.websocket(ws).expect("session.created")
