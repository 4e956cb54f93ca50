"""Fixtures every tier shares: the real tiny engine, loaded once for the whole run by the tests that need it.

Logging goes through the runtime's own configuration: plain tracebacks (structlog's default renders every
local of every frame, tensors included, which takes minutes when a device job fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from aural.runtime.logs import configure_logging

if TYPE_CHECKING:
    from aural.runtime.engine.qwen2_audio.engine import TransformersEngine

configure_logging("info")


@pytest.fixture(scope="session")
def engine() -> Iterator[TransformersEngine]:
    """The built-in tiny model on the CPU in float32 (imported here, so that tests without it never load torch)."""
    from tests.support.engines import loaded

    with loaded() as engine:
        yield engine
