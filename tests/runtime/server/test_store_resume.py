"""Resume on another server: two servers on loopback share one conversation store; a conversation begun on the
first is resumed on the second by its id once the first is gone, with its items, configuration and the last event
the first took. Raw `websockets` clients (they read `aural.session.resumed`) and the real SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from websockets.asyncio.client import ClientConnection, connect

import aural.sdk
from aural.runtime.engine.base import AudioPart
from aural.runtime.server.access import Access
from aural.runtime.server.app import SESSIONS, create_app
from aural.runtime.server.drain import LIFECYCLE, drain
from aural.runtime.server.timeouts import Timeouts
from aural.runtime.store import MemoryStore
from aural.sdk import AuralSessionResumed
from tests.support.conversations import pcm16
from tests.support.fake_engine import DEFAULT_TEXT, FakeEngine
from tests.support.resume import Event, recv, text_turn, until_type, url

from .conftest import LoudnessVad

KEY, OTHER = "sk-first-key", "sk-other-key"
POLLS = 500  # a bound on waiting for background work, never a timing assertion


@dataclass
class Ingress:
    """One server of the pair: its app, its engine and where it listens."""

    app: web.Application
    fake: FakeEngine
    server: TestServer

    async def shut_down(self) -> None:
        """Stop as `run_app` does on SIGTERM: drain the conversations (one waiting for a resume is left to the
        store), then close."""
        await drain(self.app[LIFECYCLE], self.app[SESSIONS], grace=5)
        await self.server.close()

    async def settled(self) -> None:
        """Wait until no conversation lives here."""
        for _ in range(POLLS):
            if not self.app[SESSIONS]:
                return
            driver = next(iter(self.app[SESSIONS]))
            await driver.ended()
        raise AssertionError("conversations still live")


class Ingresses:
    def __init__(self) -> None:
        self.started: list[Ingress] = []

    async def start(self, store: MemoryStore, port: int | None = None, **options: Any) -> Ingress:
        fake = FakeEngine()
        timeouts = Timeouts(resume_grace=30)
        app = create_app(fake, vad=LoudnessVad(), store=store, timeouts=timeouts, **options)
        server = TestServer(app, port=port)
        await server.start_server()
        self.started.append(Ingress(app, fake, server))
        return self.started[-1]


@pytest.fixture
async def ingresses() -> AsyncIterator[Ingresses]:
    pair = Ingresses()
    yield pair
    for ingress in pair.started:
        await ingress.shut_down()


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def send(ws: ClientConnection, **event: Any) -> None:
    await ws.send(json.dumps(event))


async def test_a_conversation_resumes_on_another_server_once_its_own_is_gone(ingresses: Ingresses) -> None:
    store = MemoryStore()
    a, b = await ingresses.start(store), await ingresses.start(store)
    first = await connect(url(a.server))
    session_id = (await recv(first))["session"]["id"]
    await send(first, type="session.update", session={"instructions": "Be brief.", "temperature": 0.8})
    configured = (await until_type(first, "session.updated"))[-1]["session"]
    spoken = {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": pcm16(0.5)}]}
    await send(first, type="conversation.item.create", item=spoken)
    items = [(await until_type(first, "conversation.item.done"))[-1]["item"]]
    turn = await text_turn(first, "remember me", event_id="evt_last")
    items += [event["item"] for event in turn if event["type"] == "conversation.item.done"]
    first.transport.abort()  # the network goes, then the server: a scale-down, or a crash after the last save
    await a.shut_down()
    assert session_id in store.conversations, "a conversation waiting for a resume outlives its server"

    second = await connect(url(b.server, session_id))
    created, resumed = await recv(second), await recv(second)
    assert created == {**created, "type": "session.created", "session": configured}
    item_ids = [item["id"] for item in items]
    assert resumed == {**resumed, "type": "aural.session.resumed", "item_ids": item_ids, "last_event_id": "evt_last"}
    assert resumed.get("response_id") is None
    for item in items:
        await send(second, type="conversation.item.retrieve", item_id=item["id"])
        assert (await until_type(second, "conversation.item.retrieved"))[-1]["item"] == item
    assert (await text_turn(second, "and now?"))[-1]["response"]["status"] == "completed"

    (before,), (after,) = a.fake.of_kind("generate"), b.fake.of_kind("generate")
    assert [message.role for message in after.conversation] == ["system", "user", "user", "assistant", "user"]
    assert after.conversation[0] == before.conversation[0] and after.conversation[2] == before.conversation[2]
    assert after.conversation[3].parts == (DEFAULT_TEXT,) and after.conversation[3].key == before.reply_key
    heard_before, heard_after = before.conversation[1].parts[0], after.conversation[1].parts[0]
    assert isinstance(heard_before, AudioPart) and isinstance(heard_after, AudioPart)
    assert heard_after.key == heard_before.key and np.array_equal(heard_after.samples, heard_before.samples)
    assert after.params == before.params and after.params is not None and after.params.temperature == 0.8

    await second.close()
    await b.settled()
    assert store.conversations == {}, "a conversation its client closed is forgotten"


async def test_only_the_key_that_opened_it_resumes_it_elsewhere(ingresses: Ingresses) -> None:
    store = MemoryStore()
    access = Access(keys=(KEY, OTHER))
    a, b = await ingresses.start(store, access=access), await ingresses.start(store, access=access)
    first = await connect(url(a.server), additional_headers=bearer(KEY))
    session_id = (await recv(first))["session"]["id"]
    first.transport.abort()
    await a.shut_down()

    for key, resume in ((OTHER, session_id), (KEY, "sess_never"), (KEY, "x" * 4096)):
        stranger = await connect(url(b.server, resume), additional_headers=bearer(key))
        error: Event = await recv(stranger)
        assert error["type"] == "error" and error["error"]["code"] == "session_not_found"
        assert error["error"]["param"] == "aural.resume"
        await stranger.wait_closed()
        assert stranger.close_code == 1008
    owner = await connect(url(b.server, session_id), additional_headers=bearer(KEY))
    assert [(await recv(owner))["type"], (await recv(owner))["type"]] == ["session.created", "aural.session.resumed"]
    await owner.close()


async def test_a_server_still_holding_a_conversation_resumed_elsewhere_leaves_it_alone(ingresses: Ingresses) -> None:
    """The first server did not die (a network split): the conversation, resumed on the second, is the second's to
    save and to end; the first's stale copy neither overwrites nor deletes it."""
    store = MemoryStore()
    a, b = await ingresses.start(store), await ingresses.start(store)
    first = await connect(url(a.server))
    session_id = (await recv(first))["session"]["id"]
    first.transport.abort()
    await until_saved(store, session_id)

    second = await connect(url(b.server, session_id))
    await until_type(second, "aural.session.resumed")
    await send(second, type="session.update", session={"instructions": "From the second."})
    await until_type(second, "session.updated")
    stale = await connect(url(a.server, session_id))  # the first server's copy, still live there
    await until_type(stale, "aural.session.resumed")
    await send(stale, type="session.update", session={"instructions": "From the first."})
    await until_type(stale, "session.updated")
    await stale.close()
    await a.settled()

    snapshot = await store.load(session_id)
    assert snapshot is not None and snapshot.config.instructions == "From the second."
    await second.close()
    await b.settled()
    assert store.conversations == {}


async def test_the_sdk_resumes_on_the_server_that_replaced_its_own(ingresses: Ingresses) -> None:
    store = MemoryStore()
    a = await ingresses.start(store)
    async with aural.sdk.connect(url(a.server)) as conn:
        await conn.add_message("user", text="one")
        assert await conn.create_response().collect() == DEFAULT_TEXT
        session_id = conn.session.id if conn.session else None
        conn._socket.ws.transport.abort()  # the network goes under the SDK, then its server
        port = a.server.port
        await a.shut_down()
        b = await ingresses.start(store, port=port)  # its replacement, at the same address
        while not isinstance(event := await conn.recv(), AuralSessionResumed):
            assert event.type == "rate_limits.updated", event
        assert conn.session is not None and conn.session.id == session_id
        assert await conn.create_response().collect() == DEFAULT_TEXT
    texts = [message.parts for message in b.fake.of_kind("generate")[-1].conversation if message.role == "user"]
    assert texts == [("one",)]


async def until_saved(store: MemoryStore, session_id: str) -> None:
    """Wait until the store holds the conversation (its first save runs in the background)."""
    for _ in range(POLLS):
        if session_id in store.conversations:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never saved")
