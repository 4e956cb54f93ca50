"""`aural serve` run in this process must leave the test run's logging as it is: `configure_logging` would point
structlog's cached loggers at one test's captured stderr."""

from __future__ import annotations

import pytest

from aural.cli import serve


@pytest.fixture(autouse=True)
def _keep_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve, "configure_logging", lambda *options: None)
