"""The real server for benches: in this process on a loopback port, or as `aural serve` in a process of its own,
and what the process holds while it runs.

- `serving(engine)`: the app (`create_app`, run as `aural serve` runs it: an `AppRunner`) on the running
  loop; yields a `LocalServer`, whose `footprint()` reads the app's live conversations and the engine's KV pool.
- `ThreadedServer(engine)`: the same on a loop in a thread of its own, for benches whose clients block
  (the client's work is then not the server loop's stall).
- `aural_serve(preset)`: `aural serve` in its own process, for timings in which the client must not compete
  with the server for one interpreter lock; `free_port()` picks a loopback port for such a server.
- `load_engine("tiny" | "fake")`: the built-in tiny model on the CPU, or the scripted fake engine; `served` runs a
  bench's work against a server for one and adds what was logged at error level to its report.
- `ErrorRecords`: counts the records logged at error level (structlog's go through the standard library's root
  logger once `configure_logging` ran; aiohttp and asyncio log uncaught exceptions there too).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiohttp
from aiohttp import web

from aural.runtime.engine.base import Engine
from aural.runtime.server.app import ENGINE, SESSIONS, create_app

T = TypeVar("T")
FAKE_WORDS = 24
FAKE_PAUSE_S = 0.005
EngineName = Literal["tiny", "fake"]


def load_engine(name: EngineName) -> Engine:
    """The built-in tiny model on the CPU (float32), or the scripted fake engine (`tests.support.fake_engine`)
    keeping no record, whose every reply streams 24 words 5 ms apart (a response that runs long enough to be
    dropped or resumed mid-generation)."""
    if name == "tiny":
        from aural.runtime.engine.qwen2_audio.engine import TransformersEngine

        return TransformersEngine.load("tiny", device="cpu", dtype="float32")
    from tests.support.fake_engine import FakeEngine, Reply

    reply = Reply(tuple(f"word{i} " for i in range(FAKE_WORDS)), pause=FAKE_PAUSE_S)
    return FakeEngine(default=reply, record=False)


@dataclass(frozen=True)
class Footprint:
    """What the process holds at one moment."""

    rss_mib: float
    fds: int
    threads: int
    """Threads of the process (the operating system's count: Python's, the engine's and its libraries')."""
    conversations: int
    """Live conversations of the app (those waiting for a resume included)."""
    kv_blocks_used: int | None
    """Blocks of the engine's KV pool in use (None: the engine has no pool)."""


def process_footprint() -> tuple[float, int, int]:
    """This process's resident memory (MiB), open file descriptors and threads, from /proc (Linux)."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    rss_kib = int(status["VmRSS"].split()[0])
    return rss_kib / 1024, len(os.listdir("/proc/self/fd")), int(status["Threads"])


def release_free_memory() -> bool:
    """Hand the C allocator's free memory back to the system (glibc's `malloc_trim(0)`), so that the resident
    memory measured next is what the process holds, not what glibc keeps for reuse in its arenas (many threads
    allocating and freeing leave it scattered there). False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.malloc_trim(0))


@dataclass(frozen=True)
class LocalServer:
    """The app on a loopback port."""

    app: web.Application
    port: int

    def url(self, model: str = "local", **query: str) -> str:
        """The realtime websocket's URL, with `?model=` and any other query parameters."""
        params = "&".join(f"{key}={value}" for key, value in {"model": model, **query}.items())
        return f"ws://127.0.0.1:{self.port}/v1/realtime?{params}"

    def footprint(self) -> Footprint:
        """The process's memory, fds and threads with the app's conversations and KV blocks (call it on the
        server's loop, or with that loop idle)."""
        rss, fds, threads = process_footprint()
        stats = self.app[ENGINE].stats()
        used = stats.blocks_used if stats is not None else None
        return Footprint(rss, fds, threads, len(self.app[SESSIONS]), used)


@asynccontextmanager
async def serving(engine: Engine, **options: Any) -> AsyncIterator[LocalServer]:
    """The runtime for `engine` (`create_app` with `options`; the model name "local" is served) on a free
    loopback port of the running loop, until the block ends."""
    options.setdefault("model_names", ["local"])
    runner = web.AppRunner(create_app(engine, **options))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield LocalServer(runner.app, runner.addresses[0][1])
    finally:
        await runner.cleanup()


class ThreadedServer:
    """`serving` on a loop in a thread of its own: `with ThreadedServer(engine) as threaded:`, then
    `threaded.server` is the `LocalServer` and `threaded.call(...)` runs a coroutine on its loop."""

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="server", daemon=True)
        self._engine = engine
        self._options = options
        self._stop = asyncio.Event()

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result()

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        started: asyncio.Future[LocalServer] = self.loop.create_future()
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(started), self.loop)
        self.server = self.call(_wait(started))
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._serving.result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()

    async def _serve(self, started: asyncio.Future[LocalServer]) -> None:
        async with serving(self._engine, **self._options) as server:
            started.set_result(server)
            await self._stop.wait()


async def _wait(future: asyncio.Future[T]) -> T:
    return await future


async def served(
    engine_name: EngineName, work: Callable[[LocalServer], Awaitable[dict[str, Any]]], **options: Any
) -> dict[str, Any]:
    """Load the engine, serve it (`serving` with `options`) while `work` runs against it, and close it; returns
    `work`'s report with the engine's name and the lines logged at error level meanwhile (`error_logs`)."""
    engine = load_engine(engine_name)
    try:
        with ErrorRecords.installed() as errors:
            async with serving(engine, **options) as server:
                report = await work(server)
    finally:
        await engine.close()
    return {"engine": engine_name, **report, "error_logs": errors.lines()}


def write_report(report: dict[str, Any], path: Path) -> None:
    """`report` as indented JSON at `path` (its folder made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def aural_serve(preset: str, options: Sequence[str] = ()) -> AsyncIterator[str]:
    """Run `aural serve` for `preset` (with the further command-line `options`) in its own process, as users
    do; yield its realtime URL.

    A separate process keeps the client's work (JSON, validation) from competing with the server for
    one interpreter lock, which would charge the client's costs to streaming.
    """
    port = free_port()
    command = [sys.executable, "-m", "aural.cli.main", "serve", "--model", preset, "--port", str(port), *options]
    server = await asyncio.create_subprocess_exec(*command, "--log-level", "warning")
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(240):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as health:
                        if health.status == 200:
                            break
                await asyncio.sleep(0.25)
            else:
                raise RuntimeError("the server did not start within 60 s")
        yield f"ws://127.0.0.1:{port}/v1/realtime"
    finally:
        server.terminate()
        await server.wait()


class ErrorRecords(logging.Handler):
    """The records logged at error level or above while installed (`with ErrorRecords.installed() as errors`)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def tracebacks(self) -> int:
        """Records that carry an exception (the standard library's `exc_info`, or structlog's in its event)."""
        return sum(1 for r in self.records if r.exc_info or (isinstance(r.msg, dict) and r.msg.get("exc_info")))

    def lines(self) -> list[str]:
        """One line per record: its logger and message."""
        return [f"{r.name}: {r.msg.get('event') if isinstance(r.msg, dict) else r.getMessage()}" for r in self.records]

    @classmethod
    @contextmanager
    def installed(cls) -> Iterator[ErrorRecords]:
        handler = cls()
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield handler
        finally:
            root.removeHandler(handler)
