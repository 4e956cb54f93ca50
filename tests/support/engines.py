"""The real engine in tests: the one place that loads a model and frees it again, and the helpers the engine
tests share (a reply run to its end, a test tone)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from aural.runtime.engine.base import EngineSession, GenerationDone, Message, SamplingParams, TextDelta
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine


@contextmanager
def loaded(
    model: str = "tiny", *, device: str = "cpu", dtype: str = "float32", **options: Any
) -> Iterator[TransformersEngine]:
    """A loaded engine (a preset, a hub id or a folder; `options` as `TransformersEngine.load` takes them),
    shut down when the block ends."""
    engine = TransformersEngine.load(model, device=device, dtype=dtype, **options)
    try:
        yield engine
    finally:
        engine.shutdown()


def tone(seed: int, seconds: float) -> npt.NDArray[np.float32]:
    """A 16 kHz tone with a little noise, different for every seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    tone = 0.3 * np.sin(2 * np.pi * (200 + 100 * seed) * t)
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


async def run_reply(
    session: EngineSession, conversation: Sequence[Message], key: str, n: int, **sampling: Any
) -> tuple[list[TextDelta], GenerationDone]:
    """Generate a reply of at most `n` tokens; returns its deltas and its end."""
    deltas, done = [], None
    async for event in session.generate(conversation, key, SamplingParams(max_tokens=n, **sampling)):
        if isinstance(event, TextDelta):
            deltas.append(event)
        else:
            done = event
    assert isinstance(done, GenerationDone)
    return deltas, done
