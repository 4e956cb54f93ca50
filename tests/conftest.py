"""Test-wide set-up: the runtime's own log configuration (plain tracebacks: structlog's default renders
every local of every frame, tensors included, which takes minutes when a device job fails)."""

from aural.runtime.logs import configure_logging

configure_logging("info")
