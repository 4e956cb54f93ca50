"""The runtime's log configuration: JSON for files and collectors, a console view without colour codes off a
terminal, the standard library's records in the same format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from aural.runtime.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    configure_logging("info")


def test_a_file_gets_one_json_object_a_line_by_default_the_standard_librarys_records_included() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    with structlog.contextvars.bound_contextvars(conversation="conv_1"):
        structlog.get_logger("aural.test").info("hello", n=1)
    logging.getLogger("aiohttp.access").info("GET /healthz %d", 200)
    structlog.get_logger("aural.test").debug("below the level")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["event"], first["n"], first["conversation"], first["level"]) == ("hello", 1, "conv_1", "info")
    assert (second["event"], second["logger"]) == ("GET /healthz 200", "aiohttp.access")


def test_the_console_format_writes_no_colour_codes_to_a_file() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    try:
        raise ValueError("boom")
    except ValueError:
        structlog.get_logger("aural.test").exception("failed", conversation="conv_2")
    text = stream.getvalue()
    assert "failed" in text and "conv_2" in text and "ValueError: boom" in text
    assert "\x1b[" not in text
