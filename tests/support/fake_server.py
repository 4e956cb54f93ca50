"""`python -m tests.support.fake_server PORT DRAIN_TIMEOUT`: the runtime as `aural serve` runs it (`run_app`: its
signal handling, its drain), serving the fake engine instead of a model, so that a test can stop a real server
process with SIGTERM in a second. Every reply counts on until it is cancelled. Logs are JSON lines on stderr.
"""

from __future__ import annotations

import sys

from aural.runtime.logs import configure_logging
from aural.runtime.server.app import create_app
from aural.runtime.server.run import run_app
from tests.support.fake_engine import FakeEngine, Reply

ENDLESS = Reply(("Counting",), endless=True, pause=0.01)


def main(port: int, drain_timeout: float) -> None:
    configure_logging("info", "json")
    engine = FakeEngine()
    engine.script(*[ENDLESS] * 64)
    run_app(create_app(engine), host="127.0.0.1", port=port, drain_timeout=drain_timeout)


if __name__ == "__main__":
    main(int(sys.argv[1]), float(sys.argv[2]))
