"""Many conversations on one engine: batched decode against decoding alone and against `generate()`,
prefill chunks interleaved with decode steps, the KV budget, offload and drop, truncation that stays cut,
a closed conversation freed at once.

Float32 on the CPU. A batched step computes the same logits as a step alone up to rounding (matrix
products of other shapes), so where tokens differ the first difference must be a near tie: the top two
logits of the step within 1e-4 of each other.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import pytest
import torch

from aural.runtime.engine.base import (
    AudioPart,
    FunctionSpec,
    GenerationDone,
    Message,
    SamplingParams,
    TextDelta,
    ToolUse,
    Truncation,
)
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine, TransformersSession
from aural.runtime.engine.qwen2_audio.jobs import ReplyJob
from aural.runtime.errors import ContextExceeded, KVBudgetExceeded
from tests.support.engines import loaded, run_reply, tone
from tests.support.reference import reference_generate

NEAR_TIE = 1e-4
RUNAWAY = "x" * 100  # the tiny model's greedy reply to this does not stop for thousands of tokens
TOOLS = (FunctionSpec("lookup", "Look a word up.", {"type": "object", "properties": {"word": {"type": "string"}}}),)


pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def fleet() -> Iterator[TransformersEngine]:
    """The tiny model with prefill chunks of 64 positions and its schedule kept."""
    with loaded(prefill_chunk=64, trace=100_000) as engine:
        yield engine


@pytest.fixture
def gaps(monkeypatch) -> dict[tuple[int, str], list[float]]:
    """The top-two logit gap of every sampled step, by (session, reply key)."""
    recorded: dict[tuple[int, str], list[float]] = defaultdict(list)
    sample = ReplyJob._sample

    def recording(self: ReplyJob, logits: torch.Tensor) -> int:
        token = sample(self, logits)
        top = torch.topk(logits, 2).values
        recorded[(id(self.session), self.reply_key)].append(float(top[0] - top[1]))
        return token

    monkeypatch.setattr(ReplyJob, "_sample", recording)
    return recorded


async def reply(session, conversation, key, n, **params) -> tuple[list[int], GenerationDone]:
    done = None
    async for event in session.generate(conversation, key, SamplingParams(max_tokens=n, **params)):
        if isinstance(event, GenerationDone):
            done = event
        else:
            assert isinstance(event, TextDelta)
    assert isinstance(done, GenerationDone)
    return list(session.generated.get(key, [])), done


def same_or_near_tie(ours: Sequence[int], theirs: Sequence[int], gaps: Sequence[float]) -> bool:
    """Equal, or the first difference comes at a step whose top two logits were within `NEAR_TIE`."""
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
    if first is None:
        return len(ours) == len(theirs)
    return gaps[first] < NEAR_TIE


EDITED = [Message("user", (AudioPart("e/0", tone(8, 1.2)), "Describe it."), "e")]
"""The first turn of the edited conversation: its reply, cut to half its text (barge-in, a truncation), is
in the history of the turn that the batch decodes."""


def scenarios() -> list[tuple[list[Message], int, ToolUse | None]]:
    """Nine conversations of different shapes: voice chat, audio analysis, text, a system turn, tools, a long
    audio, a client-made assistant turn, and one whose previous reply was cut (`EDITED`: its messages come
    later, once that reply exists); and their reply lengths (they leave the batch at different steps)."""
    said = lambda i, audio, *text: Message("user", (AudioPart(f"u{i}/0", audio), *text), f"u{i}")  # noqa: E731
    return [
        ([said(0, tone(0, 1.0))], 64, None),
        ([said(1, tone(1, 0.6), "What is this sound?")], 40, None),
        ([Message("user", ("Tell me a story about a lighthouse.",), "u2")], 90, None),
        ([Message("system", ("Answer briefly.",)), said(3, tone(3, 2.0))], 50, None),
        ([said(4, tone(4, 0.8), "Which word?")], 70, ToolUse(TOOLS, "auto")),
        ([said(5, tone(5, 31.0))], 30, None),
        (
            [
                Message("user", ("Hello.",), "u6a"),
                Message("assistant", ("Hi! How can I help?",)),
                Message("user", ("Say it again.",), "u6"),
            ],
            80,
            None,
        ),
        ([Message("user", ("é, 你好, naïve café.",), "u7")], 60, ToolUse(TOOLS, "none")),
        ([], 45, None),
    ]


async def edited_history(session: TransformersSession, kept: dict[str, list[int]]) -> list[Message]:
    """`EDITED`'s first turn answered on `session`, its reply cut to half its text, and a new question;
    `kept` gets the ids of the cut reply, as the reference renders it."""
    ids, _ = await reply(session, EDITED, "first", 24)
    said = session.engine.tokenizer.decode(ids)
    cut = said[: len(said) // 2]
    kept["first"] = list(session.engine.chat_format.follow_text(ids, cut))
    return [*EDITED, Message("assistant", (cut,), "first"), Message("user", ("And?",), "e2")]


async def test_batched_replies_equal_replies_alone_and_generate(fleet, gaps):
    """Eight conversations decode in one batch, joining one after another and leaving at different steps:
    each reply equals the same conversation decoded alone and transformers' `generate()`."""
    engine = fleet
    cases = scenarios()
    generated: dict[str, list[int]] = {}  # the edited conversation's first reply, for the reference
    alone: list[list[int]] = []
    for index, (conversation, n, tools) in enumerate(cases):
        session = await engine.open_session()
        if not conversation:
            conversation = await edited_history(session, generated)
            cases[index] = (conversation, n, tools)
        tokens, _ = await reply(session, conversation, f"alone{index}", n, tools=tools)
        alone.append(tokens)
        gaps[(0, f"alone{index}")] = gaps.pop((id(session), f"alone{index}"))
        await session.close()

    sessions = [await engine.open_session() for _ in cases]
    edited = next(index for index, (conversation, _, _) in enumerate(cases) if conversation[0] is EDITED[0])
    assert await edited_history(sessions[edited], {}) == cases[edited][0], "the same history as alone"
    started: list[asyncio.Task[tuple[list[int], GenerationDone]]] = []
    for index, ((conversation, n, tools), session) in enumerate(zip(cases, sessions, strict=True)):
        started.append(asyncio.create_task(reply(session, conversation, f"batched{index}", n, tools=tools)))
        await asyncio.sleep(0.002 * index)  # join while the others decode
    batched = [tokens for tokens, _ in await asyncio.gather(*started)]
    widths = [len(entry.decoded) for entry in engine.scheduler.schedule]
    assert max(widths) >= 4, "the conversations decoded together"

    for index, (conversation, n, tools) in enumerate(cases):
        reference = reference_generate(engine, conversation, generated, n, tools.functions if tools else ())
        near = gaps[(id(sessions[index]), f"batched{index}")]
        assert same_or_near_tie(batched[index], alone[index], near), index
        assert same_or_near_tie(alone[index], reference, gaps[(0, f"alone{index}")]), index
    for session in sessions:
        await session.close()


async def _decoding(session: TransformersSession, key: str) -> tuple[asyncio.Task[object], asyncio.Event]:
    """A runaway reply, and an event set once its first text arrived (it is in the decode batch)."""
    first = asyncio.Event()
    generation = session.generate([Message("user", (RUNAWAY,), f"q{key}")], key, SamplingParams(max_tokens=4000))

    async def consume() -> object:
        async for event in generation:
            first.set()
            if isinstance(event, GenerationDone):
                return event
        return None

    task = asyncio.create_task(consume())
    task.add_done_callback(lambda _: generation.cancel())
    return task, first


async def test_a_long_prefill_goes_in_chunks_that_ride_with_the_decode_steps(fleet):
    """A 31 s utterance (two clips, 778 audio positions) arrives while four replies decode: its audio is
    encoded a part of the encoder at a time and its prefill goes in chunks of 64 positions, each in a step
    with a token for every live stream; no step holds more than 64 positions of prefill work (audio priced in
    positions) beyond the one encoder part it began, and no live stream ever misses a step."""
    engine = fleet
    streams = [await engine.open_session() for _ in range(4)]
    running = [await _decoding(session, f"s{i}") for i, session in enumerate(streams)]
    for _, first in running:
        await first.wait()
    mark = len(engine.scheduler.schedule)
    long = await engine.open_session()
    _, done = await reply(long, [Message("user", (AudioPart("long/0", tone(9, 31.0)), "Summarise."), "l")], "l", 4)
    for task, _ in running:
        task.cancel()
    await asyncio.gather(*(task for task, _ in running), return_exceptions=True)

    schedule = list(engine.scheduler.schedule)[mark:]
    live = {session.resident.id for session in streams}
    chunks = [entry for entry in schedule if long.resident.id in entry.chunks]
    assert len(chunks) >= done.usage.input_tokens // 64, "the prefill went in chunks of 64 positions"
    assert all(live <= set(entry.decoded) for entry in chunks), "each chunk rode with every live stream's step"
    assert max(entry.prefill for entry in schedule) <= 64, "a step held more than one budget of prefill"
    encoding = [entry for entry in schedule if entry.audio]
    assert len(encoding) >= 4, "the 30 s clip's encoder parts went over several steps"
    assert all(live <= set(entry.decoded) for entry in encoding), "each part rode with every live stream's step"
    assert all(entry.prefill + entry.audio <= 64 for entry in encoding if entry.prefill), "a chunk took room twice"
    for stream in live:
        between = 0
        for entry in schedule:
            if stream in entry.decoded:
                assert between <= 1, "two steps of prefill between two decode steps of a live stream"
                between = 0
            elif entry.chunks or entry.audio:
                between += 1
    for session in [*streams, long]:
        await session.close()


async def test_prefills_that_arrive_together_share_steps(fleet, gaps):
    """Three short new turns asked for at once while a reply decodes: their prefills go
    through the model together, several in a step within the budget of 64 positions, and every reply is the
    one that conversation gets alone (or parts from it at a near tie)."""
    engine = fleet
    prompts = [_prompt(tag, length) for tag, length in (("a", 20), ("b", 5), ("c", 30))]
    alone = []
    for index, prompt in enumerate(prompts):
        session = await engine.open_session()
        alone.append((await reply(session, prompt, f"alone{index}", 12))[0])
        gaps[(0, f"alone{index}")] = gaps.pop((id(session), f"alone{index}"))
        await session.close()
    stream = await engine.open_session()
    running, first = await _decoding(stream, "together")
    await first.wait()
    sessions = [await engine.open_session() for _ in prompts]
    device = threading.Event()
    held = asyncio.ensure_future(engine.scheduler.call(device.wait))  # the three requests reach the same step
    mark = len(engine.scheduler.schedule)
    replies = asyncio.gather(
        *(
            reply(session, prompt, f"together{i}", 12)
            for i, (session, prompt) in enumerate(zip(sessions, prompts, strict=True))
        )
    )
    await asyncio.sleep(0.05)
    device.set()
    await held
    together = await replies
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)

    schedule = list(engine.scheduler.schedule)[mark:]
    ids = {session.resident.id for session in sessions}
    shared = [entry for entry in schedule if len(ids & set(entry.chunks)) >= 2]
    assert shared, "no step held two of the new turns' prefills"
    assert all(entry.prefill <= 64 and stream.resident.id in entry.decoded for entry in shared)
    for index, (session, (tokens, _)) in enumerate(zip(sessions, together, strict=True)):
        assert same_or_near_tie(tokens, alone[index], gaps[(id(session), f"together{index}")]), index
        await session.close()
    await stream.close()


async def test_speculative_work_never_delays_a_reply_s_prefill(fleet, monkeypatch):
    """A speculative prefill asked for together with a reply: the reply's prefill runs in steps of its own, the
    speculative one after it (riding with the reply's decode rows), so it never delays that first token."""
    engine = fleet
    monkeypatch.setattr(engine.scheduler, "settle", 0.0)
    replying, reading = await engine.open_session(), await engine.open_session()
    device = threading.Event()
    held = asyncio.ensure_future(engine.scheduler.call(device.wait))  # both requests reach the same step
    mark = len(engine.scheduler.schedule)
    answer = asyncio.ensure_future(reply(replying, _prompt("q", 40), "r", 6))
    ahead = asyncio.ensure_future(reading.prefill([Message("user", (AudioPart("s/0", tone(2, 3.0)),), "s")]))
    await asyncio.sleep(0.05)
    device.set()
    await asyncio.gather(held, answer, ahead)
    schedule = list(engine.scheduler.schedule)[mark:]
    ours = [entry for entry in schedule if replying.resident.id in entry.chunks]
    theirs = [entry for entry in schedule if reading.resident.id in entry.chunks or entry.audio]
    assert ours and theirs
    assert not any(reading.resident.id in entry.chunks for entry in ours), "shared a step with the reply's prefill"
    assert schedule.index(ours[-1]) < schedule.index(theirs[0]), "the reply's prefill came first"
    assert any(replying.resident.id in entry.decoded for entry in theirs), "it rode with the reply's decode rows"
    await replying.close()
    await reading.close()


async def test_on_a_busy_device_speculative_work_waits_to_settle(fleet, monkeypatch):
    """While others decode, a speculative prefill waits `settle` seconds before it starts, so one that a newer
    request (or a cancel: speech went on) makes stale within that time costs nothing; on an idle device it
    starts at once."""
    engine = fleet
    monkeypatch.setattr(engine.scheduler, "settle", 3600.0)
    stream, reading = await engine.open_session(), await engine.open_session()
    running, first = await _decoding(stream, "busy")
    await first.wait()
    mark = len(engine.scheduler.schedule)
    turn = [Message("user", (AudioPart("t/0", tone(6, 2.0)),), "t")]
    ahead = asyncio.create_task(reading.prefill(turn))

    def decoded() -> int:  # run between two steps (calls may run several to a gap)
        return sum(stream.resident.id in entry.decoded for entry in list(engine.scheduler.schedule)[mark:])

    async with asyncio.timeout(60):  # a guard against hangs only
        while await engine.scheduler.call(decoded) < 4:  # the stream decodes on, step after step
            pass
    ahead.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ahead
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    await engine.scheduler.call(lambda: None)
    schedule = list(engine.scheduler.schedule)[mark:]
    assert not any(reading.resident.id in entry.chunks or entry.audio for entry in schedule), "it started"
    assert not reading.keys
    await reading.prefill(turn)  # nothing else runs now: it starts at once
    assert reading.keys
    await stream.close()
    await reading.close()


def _small(engine: TransformersEngine, **options: Any) -> AbstractContextManager[TransformersEngine]:
    """The tiny model with a pool of 64 blocks of 16 positions (1,008 usable: block 0 pads)."""
    return loaded(prefill_chunk=64, kv_budget=64 * engine.pool.bytes_per_block, **options)


def _prompt(tag: str, length: int) -> list[Message]:
    return [Message("user", ((tag * length)[:length],), f"p{tag}")]


async def test_a_full_pool_refuses_the_newcomer_and_the_others_finish(engine):
    with _small(engine, on_full="error") as engine:
        first, second = await engine.open_session(), await engine.open_session()
        alone, _ = await reply(first, _prompt("a", 500), "a", 400)
        await first.close()
        first = await engine.open_session()
        task = asyncio.create_task(reply(first, _prompt("a", 500), "a", 400))
        await asyncio.sleep(0.05)
        _, refused = await reply(second, _prompt("b", 500), "b", 60)
        tokens, done = await task
        assert refused.reason == "error" and isinstance(refused.error, KVBudgetExceeded)
        assert done.reason == "length" and tokens == alone, "the conversation already served is not harmed"
        huge = await engine.open_session()
        _, too_big = await reply(huge, _prompt("c", 1100), "c", 4)
        assert isinstance(too_big.error, KVBudgetExceeded), "a conversation larger than the pool fails at once"


async def test_a_full_pool_makes_the_newcomer_wait_then_serves_it_identically(engine):
    """With `on_full="wait"`, the second conversation waits for the first reply to end; the first
    conversation's cache then moves to host memory, and comes back bit for bit for its next turn."""
    with _small(engine, on_full="wait", host_budget=8 * 2**20) as engine:
        solo = await engine.open_session()
        expected_b, _ = await reply(solo, _prompt("b", 500), "b", 40)
        await solo.close()
        solo = await engine.open_session()
        first_a, _ = await reply(solo, _prompt("a", 500), "a", 200)
        follow = [*_prompt("a", 500), Message("assistant", ("x",), "a"), Message("user", ("More.",), "m")]
        expected_next, _ = await reply(solo, follow, "a2", 10)
        await solo.close()

        first, second = await engine.open_session(), await engine.open_session()
        task = asyncio.create_task(reply(first, _prompt("a", 500), "a", 200))
        await asyncio.sleep(0.05)
        tokens_b, done_b = await reply(second, _prompt("b", 500), "b", 40)
        tokens_a, _ = await task
        assert (tokens_a, tokens_b) == (first_a, expected_b) and done_b.reason == "length"
        assert engine.stats().conversations_offloaded == 1, "the idle first conversation went to host memory"
        await second.close()
        follow = [*_prompt("a", 500), Message("assistant", ("x",), "a"), Message("user", ("More.",), "m")]
        tokens, done = await reply(first, follow, "a2", 10)
        assert tokens == expected_next
        assert done.usage.cached_tokens > 500, "restored, not recomputed"


@pytest.mark.parametrize("host_budget", [None, 0], ids=["offload", "drop"])
async def test_idle_conversations_leave_the_pool_and_come_back_identically(engine, host_budget):
    """After `idle_offload` seconds a conversation's cache leaves the pool: to host memory (restored bit for
    bit, the cache reused) or, past the host budget, dropped (recomputed): the next turn is the same."""
    conversation = [Message("user", (AudioPart("u/0", tone(2, 1.5)), "What is it?"), "u")]
    reference = engine
    with loaded(idle_offload=0.05, host_budget=host_budget) as engine:
        plain = await reference.open_session()
        await reply(plain, conversation, "r0", 12)
        follow = [*conversation, Message("assistant", ("ok",), "r0"), Message("user", ("And then?",), "n")]
        expected, _ = await reply(plain, follow, "r1", 12)

        session = await engine.open_session()
        await reply(session, conversation, "r0", 12)
        for _ in range(100):
            if not session.resident.cache.blocks:
                break
            await asyncio.sleep(0.05)
        assert not session.resident.cache.blocks
        assert session.resident.cache.offloaded == (host_budget is None)
        tokens, done = await reply(session, follow, "r1", 12)
        assert tokens == expected
        assert (done.usage.cached_tokens > 0) == (host_budget is None)
        await plain.close()


async def _turns(session, count: int, truncation: Truncation, words: int = 60) -> list[GenerationDone]:
    conversation: list[Message] = []
    results = []
    for turn in range(count):
        conversation.append(Message("user", (f"Turn {turn}: " + "lorem ipsum " * words,), f"u{turn}"))
        _, done = await reply(session, conversation, f"r{turn}", 8, truncation=truncation)
        results.append(done)
        if done.reason == "error":
            break
        said = session.engine.tokenizer.decode(session.generated[f"r{turn}"])
        conversation.append(Message("assistant", (said,), f"r{turn}"))
    return results


async def test_retention_ratio_cuts_once_then_stays(fleet):
    """Past the limit, the oldest turns go until half the limit is used; the following turns extend that
    cut (the cache reused) until the limit is reached again: one re-prefill per truncation, not per turn."""
    engine = fleet
    session = await engine.open_session()
    results = await _turns(session, 24, Truncation("retention_ratio", 0.5, post_instructions=3000), words=20)
    assert all(done.reason == "length" for done in results)
    inputs = [done.usage.input_tokens for done in results]
    recomputed = [k for k in range(1, len(results)) if results[k].usage.cached_tokens < inputs[k - 1]]
    assert 2 <= len(recomputed) <= 4, recomputed
    assert max(inputs) <= 3000 + 100
    await session.close()


async def test_disabled_truncation_fails_when_the_conversation_outgrows_the_limit(fleet):
    engine = fleet
    session = await engine.open_session()
    results = await _turns(session, 12, Truncation("disabled", post_instructions=2000))
    assert results[-1].reason == "error" and isinstance(results[-1].error, ContextExceeded)
    assert all(done.reason == "length" for done in results[:-1]) and len(results) < 12
    await session.close()


async def test_auto_truncation_keeps_three_quarters_of_the_context(fleet):
    engine = fleet
    session = await engine.open_session()
    results = await _turns(session, 14, Truncation("auto"), words=100)
    inputs = [done.usage.input_tokens for done in results]
    assert all(done.reason == "length" for done in results)
    assert max(inputs) <= engine.max_context - 512
    cut = next(k for k in range(1, len(inputs)) if inputs[k] < inputs[k - 1])
    assert inputs[cut] <= 0.75 * (engine.max_context - 512) + 100
    await session.close()


async def test_a_closed_session_is_freed_without_the_cycle_collector(engine):
    conversation = [Message("user", (AudioPart("a/0", tone(1, 1.0)), "what is this?"), key="a")]
    gc.collect()
    gc.disable()  # whatever outlives `close` here is held by a cycle or leaked
    try:
        session = await engine.open_session()
        await run_reply(session, conversation, "r1", 4)
        held = weakref.ref(session)
        await session.close()
        del session
        for _ in range(100):  # the device thread lets go of the call that closed it just after answering
            if held() is None:
                break
            await asyncio.sleep(0.01)
        assert held() is None
        assert engine.stats().conversations_resident == 0
    finally:
        gc.enable()
