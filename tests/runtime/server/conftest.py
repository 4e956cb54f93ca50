"""The server against the fake engine: no torch, no model, a test in milliseconds.

`serve()` starts the app on aiohttp's test server with a `FakeEngine` (the test's `fake`), and a voice
activity model that hears loudness (`LoudnessVad`); `connect()` opens a checked raw client on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from aiohttp.test_utils import TestClient

from aural.runtime.server.app import create_app
from tests.support.client import RawClient
from tests.support.fake_engine import FakeEngine

WINDOW = 512


class LoudnessVad:
    """A voice activity model for tests: a 512-sample window is speech (0.9) when its RMS is above 0.05."""

    def stream(self) -> _LoudnessStream:
        return _LoudnessStream()


class _LoudnessStream:
    def __init__(self) -> None:
        self._pending: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)

    def probabilities(self, samples: npt.NDArray[np.float32]) -> list[float]:
        data = np.concatenate([self._pending, samples])
        count = len(data) // WINDOW
        windows, self._pending = data[: count * WINDOW].reshape(count, WINDOW), data[count * WINDOW :]
        return [0.9 if float(np.sqrt(np.mean(window**2))) > 0.05 else 0.0 for window in windows]


Serve = Callable[..., Awaitable[TestClient[Any, Any]]]
Connect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
def fake() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def serve(fake: FakeEngine, aiohttp_client: Any) -> Serve:
    """`await serve(**create_app_options)`: the app on a test server, with the fake engine."""

    async def start(**options: Any) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(create_app(fake, vad=LoudnessVad(), **options))
        return client

    return start


@pytest.fixture
def connect(serve: Serve) -> Connect:
    """`await connect(protocols=(), **create_app_options)`: a raw client past `session.created`, on the test's
    server (started by the first call, with its options)."""
    servers: list[TestClient[Any, Any]] = []

    async def open_client(protocols: tuple[str, ...] = (), **options: Any) -> RawClient:
        if not servers:
            servers.append(await serve(**options))
        http = servers[0]
        client = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake", protocols=protocols))
        await client.expect("session.created")
        return client

    return open_client
