"""A Redis server of the test's own: Debian's `redis-server` on a Unix socket in a temporary folder, with nothing
saved to disk. Without it the Redis tests skip, unless `AURAL_REQUIRE_REDIS=1` (CI sets it) makes them fail, so that
they cannot silently stop running."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REQUIRED = os.environ.get("AURAL_REQUIRE_REDIS") == "1"
POLLS = 500  # a bound on waiting for the server to listen, never a timing assertion


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A running `redis-server`; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if REQUIRED:
            pytest.fail(f"{reason}, and AURAL_REQUIRE_REDIS=1 requires the Redis tests")
        pytest.skip(reason)
    socket = folder / "redis.sock"
    options = ["--port", "0", "--unixsocket", str(socket), "--save", "", "--appendonly", "no", "--dir", str(folder)]
    server = subprocess.Popen([binary, *options], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        for _ in range(POLLS):
            if socket.exists() or server.poll() is not None:
                break
            time.sleep(0.01)
        if not socket.exists():
            pytest.fail(f"redis-server did not start (exit status {server.poll()})")
        yield f"unix://{socket}"
    finally:
        server.terminate()
        server.wait()
