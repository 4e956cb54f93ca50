"""The fake engine the driver and server tests run on keeps the engine interface's promises."""

from __future__ import annotations

import asyncio

from aural.runtime.engine.base import GenerationDone, Message, SamplingParams, SessionMemory, TextDelta, TokenUsage
from tests.support.fake_engine import FakeEngine, Reply

HELLO = [Message("user", ("Hello.",), key="u0")]


async def test_a_cancelled_generation_ends_as_cancelled_before_its_next_event() -> None:
    engine = FakeEngine()
    engine.script(Reply(("a",), endless=True))
    session = await engine.open_session()
    generation = session.generate(HELLO, "r0", SamplingParams())
    events = []
    async for event in generation:
        events.append(event)
        if len(events) == 3:
            generation.cancel()
    assert [type(event) for event in events] == [TextDelta, TextDelta, TextDelta, GenerationDone]
    assert isinstance(events[-1], GenerationDone) and events[-1].reason == "cancelled"
    assert events[-1].usage.output_tokens == 3


async def test_a_prefill_a_newer_request_supersedes_stops() -> None:
    engine = FakeEngine()
    session = await engine.open_session()
    first = asyncio.create_task(session.prefill(HELLO))
    await asyncio.sleep(0)
    await session.prefill([*HELLO, Message("user", ("More.",), key="u1")])
    await first
    assert [outcome for _, outcome in engine.prefills] == ["superseded", "done"]
    assert [call.kind for call in engine.calls] == ["open", "prefill", "prefill"]


async def test_closing_a_session_cancels_its_generation() -> None:
    engine = FakeEngine()
    engine.script(Reply(("a",), endless=True))
    session = await engine.open_session()
    generation = session.generate(HELLO, "r0", SamplingParams())
    await session.close()
    done = GenerationDone("cancelled", TokenUsage(input_tokens=10), reply_ids=())
    assert [event async for event in generation] == [done]


async def test_a_memory_folded_from_the_events_opens_a_session_with_it() -> None:
    engine = FakeEngine()
    session = await engine.open_session()
    *_, done = [event async for event in session.generate(HELLO, "r0", SamplingParams())]
    assert isinstance(done, GenerationDone)
    failed = GenerationDone("error", window="u0")  # before the reply began: the session kept no ids for it
    memory = SessionMemory().after("r0", done).after("r1", failed)
    assert memory == SessionMemory({"r0": (0,)}, window="u0")
    assert (await engine.open_session(memory)).memory is memory
