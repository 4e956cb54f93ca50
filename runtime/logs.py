"""Structured logging for the runtime (structlog): one JSON object a line for collectors, or a console view.

Every record, the standard library's included (aiohttp's access log, warnings), goes through one handler on
the root logger and one renderer, so a log file holds a single format and no colour codes. The conversation
driver binds its ids with `structlog.contextvars`, so that each line a connection's work logs names its
`session` and `conversation` (and `response`, while one streams).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

LogFormat = Literal["json", "console"]

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]
_HANDLER_NAME = "aural"


def default_format(stream: TextIO) -> LogFormat:
    """JSON unless a person watches `stream` (a terminal): files and log collectors get one object a line."""
    return "console" if stream.isatty() else "json"


def configure_logging(level: str = "info", fmt: LogFormat | None = None, stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's records to `stream` (stderr) at `level`, rendered as `fmt`
    (None: `default_format` of the stream). Calling it again replaces the previous configuration."""
    stream = stream or sys.stderr
    fmt = fmt or default_format(stream)
    numeric = logging.getLevelName(level.upper())
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        colors = stream.isatty()
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=structlog.dev.plain_traceback)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([structlog.processors.format_exc_info] if fmt == "json" else []),
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(numeric)
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
