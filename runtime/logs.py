"""Structured logging for the runtime (structlog), readable on a console, plain tracebacks."""

from __future__ import annotations

import logging

import structlog


def configure_logging(level: str = "info") -> None:
    """Route structlog (and the standard library's records) to stderr at `level`."""
    numeric = logging.getLevelName(level.upper())
    logging.basicConfig(level=numeric, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
