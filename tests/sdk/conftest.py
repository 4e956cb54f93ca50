"""Fixtures for the SDK tests: a scripted, recording fake Realtime server, and audio files.

The fake server is a real `websockets` server on a free loopback port. It records the handshake and
every client event, sends its `greeting` on connect, and answers each client event with what its
responder for that event type returns.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from websockets.asyncio.server import ServerConnection, serve

from aural.protocols import ServerEvent, encode_event

Responder = Callable[[dict[str, Any]], list[ServerEvent]]
"""Given a client event (as JSON), the server events to answer with."""

AudioWriter = Callable[[str, str, npt.NDArray[np.int16], int], Path]
"""`(file name, codec, int16 samples of shape (frames, channels), rate) -> path` of the written file."""


@dataclass
class FakeServer:
    """What one test's server does (set before connecting) and what it saw."""

    url: str = ""
    greeting: list[ServerEvent | str] = field(default_factory=list)
    """Sent right after the handshake; a `str` is sent as is (for events the protocol lacks)."""
    close_code: int | None = None
    """When set, the server closes with this code right after the greeting."""
    responders: dict[str, Responder] = field(default_factory=dict)
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        """The client events of one type received so far."""
        return [event for event in self.received if event["type"] == event_type]

    async def finished(self) -> None:
        """Wait until the connection is over and every client event has been recorded."""
        await asyncio.wait_for(self._done.wait(), 2)

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.path = ws.request.path
        self.headers = {name.lower(): value for name, value in ws.request.headers.raw_items()}
        try:
            for event in self.greeting:
                await ws.send(event if isinstance(event, str) else encode_event(event))
            if self.close_code is not None:
                await ws.close(self.close_code)
                return
            async for message in ws:
                event = json.loads(message)
                self.received.append(event)
                responder = self.responders.get(event["type"])
                for reply in responder(event) if responder else []:
                    await ws.send(encode_event(reply))
        finally:
            self._done.set()


@pytest.fixture(autouse=True)
def deadline() -> Iterator[None]:
    """Fail a test after 5 s: a stream waiting for an event that never comes must not hang CI."""

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError("the test ran for more than 5 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
async def server() -> AsyncIterator[FakeServer]:
    fake = FakeServer()
    async with serve(fake.handle, "127.0.0.1", 0) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/v1/realtime"
        yield fake


@pytest.fixture
def write_audio(tmp_path: Path) -> AudioWriter:
    def write(name: str, codec: str, samples: npt.NDArray[np.int16], rate: int) -> Path:
        path = tmp_path / name
        layout = {1: "mono", 2: "stereo"}[samples.shape[1]]
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=rate, layout=layout)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate = rate
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                container.mux(packet)
        return path

    return write
