"""The runtime in its client's process: `aural.runtime.local(model="tiny")` is an `Opener` for the SDK.

    async with aural.runtime.local(model="tiny") as runtime, aural.sdk.connect(runtime=runtime) as conn:
        ...

It builds what `aural serve` builds (`create_app`: the engine, the voice activity model, the server tools,
the limits and timeouts) and serves no socket: each connection is an in-memory pipe (`transports.pipe`)
whose server end goes to `converse`, the admission and `ConnectionDriver` of the websocket route. Frames
still go through the codec, the `Limits` and the session, so a client sees what it would see over a
websocket; the model still runs on its device loop, decoding on the ingest thread, never on the event loop.

The model loads once, in a thread, at the first connection (or `start`); every connection after it shares it,
and a connection's close frees its conversation as the server's would. `close` drains the conversations as a
server's shutdown does (`drain.py`), then closes the engine it loaded.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from ..engine.base import Engine
from .access import Caller
from .app import ENGINE, LIMITS, SESSIONS, SUBPROTOCOLS, converse, create_app
from .drain import DRAIN_TIMEOUT, LIFECYCLE, drain
from .transports import PipeEnd, pipe

APP_OPTIONS = frozenset({"model_names", "max_sessions", "server_tools", "vad", "limits", "bounds", "timeouts"})
"""The options of `local` that go to `create_app`; the others go to `TransformersEngine.load`."""


def local(model: str = "tiny", **options: Any) -> LocalRuntime:
    """The runtime for a model, to run in this process: pass it to `aural.sdk.connect(runtime=...)`.

    Nothing loads until the first connection (or `await runtime.start()`); then the model loads off the event
    loop. Close it with `await runtime.close()`, or use it with `async with`.

    Args:
        model: `tiny` (the built-in random model), `medium`, a hub id or a local folder, as for `aural serve`.
        options: `create_app`'s (`server_tools`, `max_sessions`, `limits`, `bounds`, `timeouts`, `vad`,
            `model_names`) and `TransformersEngine.load`'s (`device`, `dtype`, `kv_budget`...).
    """
    app_options = {name: value for name, value in options.items() if name in APP_OPTIONS}
    load_options = {name: value for name, value in options.items() if name not in APP_OPTIONS}

    def build() -> web.Application:
        from ..engine.qwen2_audio.engine import TransformersEngine  # torch, only once a model is wanted

        engine = TransformersEngine.load(model, **load_options)
        try:
            return create_app(engine, **app_options)
        except BaseException:
            engine.shutdown()
            raise

    return LocalRuntime(build, owns_engine=True)


class LocalRuntime:
    """The runtime serving connections in this process (an `aural.protocols.transport.Opener`).

    Args:
        build: makes the app, model loaded (blocking: run once, in a thread).
        owns_engine: close the app's engine with the runtime.
        drain_timeout: on `close`, how long running responses may finish before they are cancelled.
    """

    def __init__(
        self, build: Callable[[], web.Application], *, owns_engine: bool = True, drain_timeout: float = DRAIN_TIMEOUT
    ) -> None:
        self._build = build
        self._owns_engine = owns_engine
        self._drain_timeout = drain_timeout
        self._app: web.Application | None = None
        self._starting = asyncio.Lock()
        self._conversations: set[asyncio.Task[None]] = set()
        self._closed = False

    @classmethod
    def serving(cls, engine: Engine, **options: Any) -> LocalRuntime:
        """A runtime on an engine loaded already, which it leaves open; `options` are `create_app`'s."""
        return cls(functools.partial(create_app, engine, **options), owns_engine=False)

    @property
    def sessions(self) -> int:
        """The live conversations (`/healthz`'s `sessions`)."""
        return len(self._app[SESSIONS]) if self._app is not None else 0

    async def start(self) -> None:
        """Load the model (off the event loop) unless it is loaded already."""
        await self._started()

    async def _started(self) -> web.Application:
        async with self._starting:
            if self._closed:
                raise ConnectionRefusedError("the runtime is closed")
            if self._app is None:
                self._app = await asyncio.to_thread(self._build)
            return self._app

    async def open(self, query: Mapping[str, str], subprotocols: Sequence[str]) -> PipeEnd:
        """A new connection: the client's end of a pipe whose server end a conversation task serves. The server
        takes the subprotocols it takes over a websocket, in its order of preference."""
        app = await self._started()
        if app[LIFECYCLE].draining:
            raise ConnectionRefusedError("the runtime is closing")
        chosen = next((name for name in SUBPROTOCOLS if name in subprotocols), None)
        client, server = pipe(chosen, app[LIMITS].max_message_bytes)
        task = asyncio.create_task(self._serve(app, server, dict(query)), name="local connection")
        self._conversations.add(task)
        task.add_done_callback(self._conversations.discard)
        return client

    @staticmethod
    async def _serve(app: web.Application, server: PipeEnd, query: dict[str, str]) -> None:
        try:
            await converse(app, server, query, Caller())  # in-process: no key, as an open loopback server
        finally:
            await server.close()

    async def close(self) -> None:
        """Drain the conversations (running responses get `drain_timeout` to finish), close every connection
        with 1001, then close the engine if this runtime loaded it. A no-op when closed already."""
        async with self._starting:
            app, self._app, self._closed = self._app, None, True
        if app is None:
            return
        conversations = app[SESSIONS]
        await drain(app[LIFECYCLE], conversations, self._drain_timeout)
        await asyncio.gather(*self._conversations, return_exceptions=True)
        if self._owns_engine:
            await app[ENGINE].close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
