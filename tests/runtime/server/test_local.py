"""The runtime in its client's process (`aural.runtime.local`), against the fake engine: the real SDK over the
in-memory pipe to the server's own admission and driver. One build for many connections, each close frees its
conversation, refusals and limits as over a websocket, a clean close, and no socket anywhere."""

from __future__ import annotations

import asyncio
import functools
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

import aural.sdk
from aural.protocols.limits import Limits
from aural.protocols.server_events import ResponseDone
from aural.protocols.transport import TransportClosed
from aural.runtime.server.app import create_app
from aural.runtime.server.local import LocalRuntime
from aural.runtime.server.transports import PIPE_BYTES, pipe
from aural.sdk import AuralConnectionError, AuralServerError, SessionCreated
from tests.support.fake_engine import DEFAULT_TEXT, FakeEngine

from .conftest import LoudnessVad

ROOT = Path(__file__).resolve().parents[3]
GUARD = 30.0  # a bound against hangs only, never asserted on


class CountedBuild:
    """`create_app` on the fake engine, counting the builds."""

    def __init__(self, fake: FakeEngine, **options: object) -> None:
        self.builds = 0
        self._build = functools.partial(create_app, fake, vad=LoudnessVad(), **options)

    def __call__(self) -> web.Application:
        self.builds += 1
        return self._build()


@pytest.fixture
async def local(fake: FakeEngine) -> AsyncIterator[Callable[..., LocalRuntime]]:
    """`local(**create_app_options)`: a runtime on the fake engine (which it owns), closed at the end."""
    runtimes: list[LocalRuntime] = []

    def make(**options: object) -> LocalRuntime:
        runtimes.append(LocalRuntime(CountedBuild(fake, **options)))
        return runtimes[-1]

    yield make
    for runtime in runtimes:
        await runtime.close()


async def until_sessions(runtime: LocalRuntime, expected: int, *, polls: int = 500) -> None:
    """Poll the runtime until it holds `expected` conversations, a bounded number of times."""
    for _ in range(polls):
        if runtime.sessions == expected:
            return
        await asyncio.sleep(0.01)
    assert runtime.sessions == expected


async def test_one_build_serves_many_connections_and_each_close_frees_its_conversation(fake: FakeEngine) -> None:
    build = CountedBuild(fake)
    runtime = LocalRuntime(build, owns_engine=False)
    connections = [aural.sdk.connect(runtime=runtime, model="fake") for _ in range(3)]
    async with asyncio.timeout(GUARD):
        opened = await asyncio.gather(*(conn.__aenter__() for conn in connections))  # the first ones race the build
        for conn in opened:
            await conn.add_message("user", text="Hello?")
        replies = await asyncio.gather(*(conn.create_response().collect() for conn in opened))
    assert replies == [DEFAULT_TEXT] * 3
    assert build.builds == 1
    assert runtime.sessions == 3 and len(fake.sessions) == 3
    await opened[0].close()
    await until_sessions(runtime, 2)
    assert [session.closed for session in fake.sessions].count(True) == 1, "its engine session is freed"
    for conn in opened[1:]:
        await conn.close()
    await until_sessions(runtime, 0)
    assert all(session.closed for session in fake.sessions)
    assert not fake.closed, "the engine stays loaded for the next connection"
    await runtime.close()
    assert not fake.closed, "an engine it did not load stays open"


async def test_a_model_it_does_not_serve_is_refused_as_over_a_websocket(local: Callable[..., LocalRuntime]) -> None:
    async with aural.sdk.connect(runtime=local(), model="no-such-model") as conn:
        with pytest.raises(AuralServerError) as refused:
            for _ in range(50):  # the refusal's close arrives within the first few sends
                await conn.commit()
                await asyncio.sleep(0.01)
    assert refused.value.code == "model_not_found"


async def test_the_session_limit_holds(local: Callable[..., LocalRuntime]) -> None:
    runtime = local(max_sessions=1)
    async with aural.sdk.connect(runtime=runtime) as first, aural.sdk.connect(runtime=runtime) as second:
        assert isinstance(await first.recv(), SessionCreated)
        refusal = await second.recv()
        assert refusal.type == "error" and refusal.error.code == "session_limit_reached"  # type: ignore[union-attr]
        with pytest.raises(AuralConnectionError, match="1008"):
            await second.recv()


async def test_a_message_over_the_size_limit_closes_the_connection_with_1009(
    local: Callable[..., LocalRuntime],
) -> None:
    runtime = local(limits=Limits(max_message_bytes=4096))
    async with aural.sdk.connect(runtime=runtime, resume=0) as conn:
        assert isinstance(await conn.recv(), SessionCreated)
        await conn.append_audio(bytes(8192))
        with pytest.raises(AuralConnectionError, match="1009"):
            await conn.recv()
    await until_sessions(runtime, 0)


async def test_closing_the_runtime_ends_its_conversations_cleanly_and_closes_the_engine(
    local: Callable[..., LocalRuntime], fake: FakeEngine
) -> None:
    runtime = local()
    async with aural.sdk.connect(runtime=runtime) as conn:
        await conn.add_message("user", text="Hello?")
        assert await conn.create_response().collect() == DEFAULT_TEXT
        await runtime.close()
        read = [event async for event in conn]  # ends with the runtime's close (1001), not an error
        assert not any(isinstance(event, ResponseDone) for event in read)
        with pytest.raises(AuralConnectionError, match="1001"):
            await conn.recv()
    assert fake.closed and all(session.closed for session in fake.sessions)
    with pytest.raises(AuralConnectionError, match="closed"):
        await aural.sdk.connect(runtime=runtime)


async def test_the_pipe_keeps_order_bounds_what_is_unread_and_closes_as_a_websocket_does() -> None:
    client, server = pipe("aural.binary-audio", PIPE_BYTES)
    assert client.subprotocol == server.subprotocol == "aural.binary-audio"
    quarter = PIPE_BYTES // 4
    frames: list[str | bytes] = ["a" * quarter, bytes(quarter), "c" * quarter, "d" * quarter]
    for frame in frames:
        await client.send(frame)
    blocked = asyncio.create_task(client.send("e"))  # the pipe is full: the sender waits for the reader
    for _ in range(10):
        await asyncio.sleep(0)
    assert not blocked.done()
    assert await server.recv() == frames[0]
    await blocked
    await server.send("bye")
    await server.close(1001, "going away")
    assert [await server.recv() for _ in range(4)] == [*frames[1:], "e"], "what was sent before the close is read"
    assert await client.recv() == "bye"
    for end in (client, server):
        with pytest.raises(TransportClosed) as closed:
            await end.recv()
        assert (closed.value.code, closed.value.reason, closed.value.normal) == (1001, "going away", True)
    with pytest.raises(TransportClosed):
        await client.send("late")


async def test_the_pipe_closes_with_1009_on_a_message_over_the_servers_limit() -> None:
    client, server = pipe(None, 16)
    await client.send("é" * 9)  # 18 bytes in UTF-8
    with pytest.raises(TransportClosed) as closed:
        await server.recv()
    assert closed.value.code == 1009
    with pytest.raises(TransportClosed) as told:
        await client.recv()
    assert told.value.code == 1009 and not told.value.lost


def test_connect_takes_a_url_or_a_runtime(local: Callable[..., LocalRuntime]) -> None:
    with pytest.raises(ValueError, match="url or a runtime"):
        aural.sdk.connect()
    with pytest.raises(ValueError, match="a runtime alone"):
        aural.sdk.connect("ws://127.0.0.1:1/v1/realtime", runtime=local())
    with pytest.raises(ValueError, match="a runtime alone"):
        aural.sdk.connect(runtime=local(), api_key="sk-test")


SOCKETS = """
    import asyncio, json, sys
    import aural.sdk
    from aiohttp import web
    from aural.runtime.logs import configure_logging
    from aural.runtime.server.app import create_app
    from aural.runtime.server.local import LocalRuntime
    from tests.runtime.server.conftest import LoudnessVad
    from tests.support.fake_engine import FakeEngine

    events = []
    sys.addaudithook(lambda event, args: events.append(event) if event.startswith("socket.") else None)

    async def turn(connecting: aural.sdk.Connection) -> dict[str, object]:
        events.clear()
        async with connecting as conn:
            await conn.add_message("user", text="Hello?")
            text = await conn.create_response().collect()
        return {"text": text, "socket_events": sorted(set(events))}

    async def main() -> None:
        configure_logging("warning")
        app = create_app(FakeEngine(), vad=LoudnessVad())
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"ws://127.0.0.1:{runner.addresses[0][1]}/v1/realtime"
        embedded = await turn(aural.sdk.connect(runtime=LocalRuntime(lambda: app, owns_engine=False)))
        websocket = await turn(aural.sdk.connect(url))
        print(json.dumps({"embedded": embedded, "websocket": websocket}))

    asyncio.run(main())
"""


def test_no_socket_is_opened_in_embedded_mode() -> None:
    """Python's audit events for sockets (creation, connect, bind, address lookups), recorded around a whole
    turn: none in embedded mode, while the same turn over the loopback websocket shows that they are seen."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SOCKETS)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["embedded"] == {"text": DEFAULT_TEXT, "socket_events": []}
    assert report["websocket"]["text"] == DEFAULT_TEXT
    assert {"socket.__new__", "socket.connect"} <= set(report["websocket"]["socket_events"])
