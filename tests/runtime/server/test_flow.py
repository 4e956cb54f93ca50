"""Flow control with a client that stops reading during a long response.

The engine side is the real one (`StreamedGeneration`, fed from a thread at a steady pace, as the device
worker feeds it): a consumer that keeps up takes every delta on its own. When the client stops reading, the
socket fills, the send waits, the consumer stops taking deltas and the pending ones merge: the server holds
a bounded write buffer and one merged delta instead of a queue of events, and the client, reading again,
gets the whole text in a few deltas. The kernel's buffers are made small on both ends (Linux grows a
loopback socket's send buffer to 4 MB on its own), so that a modest reply fills them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from websockets.asyncio.client import connect as ws_connect

from aural.runtime.engine.base import GenerationDone, Message, SamplingParams, SessionMemory, TextDelta, TokenUsage
from aural.runtime.engine.generation import StreamedGeneration
from aural.runtime.server.app import create_app
from tests.support.client import RawClient, add_text, create_response
from tests.support.fake_engine import FakeEngine, FakeSession

from .conftest import LoudnessVad

PIECE = "w" * 1023 + " "
PIECES = 1_500
"""1.5 MB of text in 1,500 deltas (about 1.8 MB of events unmerged)."""
PACE = 0.0005
"""Seconds between two deltas: a steady decoder."""
SMALL_BUFFER = 8192
WRITE_LIMIT = 2**19
"""A bound on the server's own write buffer for the socket: aiohttp lets it reach its high watermark (64 KiB)
and what it writes between two checks (here about 240 KB in all), far less than the reply."""
GUARD = 60.0  # a bound against hangs only, never asserted on


class FloodSession(FakeSession):
    """Replies pushed from a thread at a steady pace through the real engine's event-loop side."""

    engine: FloodEngine

    def generate(  # type: ignore[override]  # the real engine's generation, not the scripted one
        self, conversation: Sequence[Message], reply_key: str, params: SamplingParams
    ) -> StreamedGeneration:
        generation = StreamedGeneration(asyncio.get_running_loop())

        def push() -> None:
            for index in range(PIECES):
                generation.push_threadsafe(TextDelta(PIECE, (index,)))
                time.sleep(PACE)
            generation.push_threadsafe(GenerationDone("stop", TokenUsage(output_tokens=PIECES)))
            self.engine.pushed.set()

        threading.Thread(target=push, daemon=True).start()
        return generation


class FloodEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.pushed = threading.Event()

    async def open_session(self, memory: SessionMemory | None = None) -> FloodSession:
        session = FloodSession(self, len(self.sessions), memory or SessionMemory())
        self.sessions.append(session)
        return session


async def test_a_client_that_stops_reading_gets_merged_deltas_and_the_whole_text(aiohttp_client: Any) -> None:
    engine = FloodEngine()
    app = create_app(engine, vad=LoudnessVad())
    transports: list[asyncio.Transport] = []

    async def small_send_buffer(request: web.Request, response: web.StreamResponse) -> None:
        assert isinstance(request.transport, asyncio.Transport)
        request.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        transports.append(request.transport)

    app.on_response_prepare.append(small_send_buffer)
    http = await aiohttp_client(app)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", http.port))
    url = f"ws://127.0.0.1:{http.port}/v1/realtime?model=fake"
    async with ws_connect(
        url, sock=sock, max_queue=1, max_size=None, compression=None
    ) as ws:  # raw bytes; reads ahead by one frame
        client = RawClient.websocket(ws)
        await client.expect("session.created")
        await add_text(client, "Talk for a long time.")
        await create_response(client, 4096)
        await client.recv_until("response.created")

        assert await asyncio.to_thread(engine.pushed.wait, GUARD), "the engine pushed the whole reply"
        [transport] = transports
        assert transport.get_write_buffer_size() <= WRITE_LIMIT, "the server's own buffer stays bounded"
        for end, option in ((sock, socket.SO_RCVBUF), (transport.get_extra_info("socket"), socket.SO_SNDBUF)):
            end.setsockopt(socket.SOL_SOCKET, option, 1 << 20)  # reading again, at full speed
        await client.recv_until("response.done")
        assert json.loads(await ws.recv())["type"] == "rate_limits.updated"  # the queue empties: the close gets read

    deltas = [event["delta"] for event in client.events if event["type"] == "response.output_text.delta"]
    [done] = [event for event in client.events if event["type"] == "response.output_text.done"]
    assert "".join(deltas) == done["text"] == PIECE * PIECES
    assert len(deltas) < PIECES // 4, "pending deltas merged while the client did not read"
