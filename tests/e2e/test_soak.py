"""The soak and load benches (`bench.soak`, `bench.load`), short: conversations opened, spoken to and dropped
(mid-generation too) or resumed leave no conversation, thread or file descriptor behind and nothing logged at
error level (the runtime with the fake engine, whose replies run long enough to be dropped mid-way);
conversations at once on the tiny model get every event of every response in order, and only their own, and
leave no KV block in use."""

from __future__ import annotations

import asyncio
import gc

import pytest

from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.server.timeouts import Timeouts
from bench.load import load
from bench.local_server import ErrorRecords, load_engine, serving
from bench.soak import DROPS, settled, soak

pytestmark = pytest.mark.model

GRACE = 0.2


async def collect_earlier_garbage() -> None:
    """What earlier tests left unclosed logs its error now, not in the soak: a client whose loop is gone schedules
    its `aclose()` on this loop when collected (openai's httpx wrapper does), and that task's error is logged when
    the task itself is collected."""
    gc.collect()
    await asyncio.sleep(0.05)
    gc.collect()


async def test_a_short_soak_leaves_nothing_behind() -> None:
    await collect_earlier_garbage()
    with ErrorRecords.installed() as errors:
        async with serving(load_engine("fake"), timeouts=Timeouts(resume_grace=GRACE)) as server:
            report = await soak(server, cycles=15, warm_up=3, grace=GRACE)
    assert report["failures"] == {}
    outcomes = report["outcomes"]
    assert [outcomes[how] for how in DROPS] == [5, 5, 5]
    assert outcomes["resumed while it ran"] + outcomes.get("resumed after the response ended", 0) == 15
    assert outcomes["resumed while it ran"], "a resume took over a running response"
    leaks = report["leaks"]
    assert leaks["conversations"] == 0 and leaks["threads"] <= 0 and leaks["fds"] <= 0
    assert errors.lines() == []


async def test_conversations_at_once_get_their_own_events_in_order(engine: TransformersEngine) -> None:
    with ErrorRecords.installed() as errors:
        async with serving(engine) as server:
            report = await load(server, conversations=10, turns=2)
            left = (await settled(server, GRACE)).footprint
    assert report["failures"] == []
    assert report["responses_checked"] == 20
    assert left.conversations == 0 and left.kv_blocks_used == 0
    assert errors.lines() == []
