"""The soak and load benches (`bench.soak`, `bench.load`), short, on the tiny model: conversations opened,
spoken to and dropped (mid-generation too) or resumed leave no conversation, KV block, thread or file descriptor
behind and nothing logged at error level; conversations at once get every event of every response in order,
and only their own."""

from __future__ import annotations

import pytest

from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.server.timeouts import Timeouts
from bench.load import load
from bench.local_server import ErrorRecords, serving
from bench.soak import DROPS, soak

pytestmark = pytest.mark.model

GRACE = 0.2


async def test_a_short_soak_leaves_nothing_behind(engine: TransformersEngine) -> None:
    with ErrorRecords.installed() as errors:
        async with serving(engine, timeouts=Timeouts(resume_grace=GRACE)) as server:
            report = await soak(server, cycles=15, warm_up=3, grace=GRACE)
    assert report["failures"] == {}
    outcomes = report["outcomes"]
    assert [outcomes[how] for how in DROPS] == [5, 5, 5]
    assert sum(count for how, count in outcomes.items() if how.startswith("resumed")) == 15
    assert outcomes.get("resumed while it ran"), "a resume took over a running response"
    leaks = report["leaks"]
    assert leaks["conversations"] == 0 and leaks["kv_blocks_used"] == 0
    assert leaks["threads"] <= 0 and leaks["fds"] <= 0
    assert errors.lines() == []


async def test_conversations_at_once_get_their_own_events_in_order(engine: TransformersEngine) -> None:
    with ErrorRecords.installed() as errors:
        async with serving(engine) as server:
            report = await load(server, conversations=10, turns=2)
    assert report["failures"] == []
    assert report["responses_checked"] == 20
    assert errors.lines() == []
