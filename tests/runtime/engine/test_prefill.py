"""Speculative prefill while the user is still talking, against transformers' own `generate()`.

The session prefills the conversation with the user's partial message (the completed 30 s clips so
far, under the final message's id) and again with all the audio when silence begins; the reply then
prefills only its last position, and its tokens are those of a reply without any prefill.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from structlog.testing import capture_logs

from aural.runtime.engine.base import AudioPart, Message, SamplingParams, TextDelta, Truncation
from aural.runtime.engine.batching.scheduler import Budget
from aural.runtime.engine.qwen2_audio.chat_format import CLIP_SAMPLES
from aural.runtime.engine.qwen2_audio.jobs import SpeculationJob
from tests.support.engines import run_reply, tone
from tests.support.reference import reference_generate

pytestmark = pytest.mark.model

_HISTORY = [Message("user", (AudioPart("u0/0", tone(1, 0.8)),), "u0")]


def _said(audio: np.ndarray) -> Message:
    return Message("user", (AudioPart("u1/0", audio), "Answer."), "u1")


async def _with_history(engine):
    """A session that has answered `_HISTORY`, and the conversation so far."""
    session = await engine.open_session()
    deltas, _ = await run_reply(session, _HISTORY, "r0", 6)
    reply = Message("assistant", ("".join(d.text for d in deltas),), "r0")
    return session, [*_HISTORY, reply]


async def test_prefill_while_talking_leaves_only_the_last_position_to_the_reply(engine):
    long = tone(3, 31.0)
    session, history = await _with_history(engine)
    await session.prefill([*history, _said(long[:CLIP_SAMPLES])])  # the first clip is complete
    await session.prefill([*history, _said(long)])  # silence begins
    conversation = [*history, _said(long)]
    _, done = await run_reply(session, conversation, "r1", 8)
    assert done.usage.cached_tokens == done.usage.input_tokens - 1

    plain, _ = await _with_history(engine)
    await run_reply(plain, conversation, "r1", 8)
    assert session.generated["r1"] == plain.generated["r1"]
    assert plain.generated["r1"] == reference_generate(engine, conversation, {"r0": session.generated["r0"]}, 8)
    await session.close()
    await plain.close()


async def test_a_partial_message_keeps_its_completed_clips_for_the_reply(engine):
    long = tone(4, 31.0)
    session, history = await _with_history(engine)
    await session.prefill([*history, _said(long[:CLIP_SAMPLES])])
    conversation = [*history, _said(long)]
    _, done = await run_reply(session, conversation, "r1", 8)
    first = engine.chat_format.render(conversation, session.generated.get).clips[-2]
    assert first.start + first.length < done.usage.cached_tokens < done.usage.input_tokens - 1
    assert session.generated["r1"] == reference_generate(engine, conversation, {"r0": session.generated["r0"]}, 8)
    await session.close()


async def test_a_prefill_asked_for_during_a_reply_waits_for_its_end(engine):
    """Run between two decode steps, the prefill would change the cache under the reply."""
    session = await engine.open_session()
    generation = session.generate(_HISTORY, "r0", SamplingParams(max_tokens=40))
    prefill: asyncio.Task[None] | None = None
    text = ""
    async for event in generation:
        if isinstance(event, TextDelta):
            text += event.text
            if prefill is None:
                other = [Message("user", ("Something else entirely.",), "x")]
                prefill = asyncio.create_task(session.prefill(other))
                await asyncio.sleep(0)  # queued while the reply has most of its steps to go
        else:
            assert event.reason == "length" and event.usage.output_tokens == 40
    assert prefill is not None
    await prefill
    assert session.generated["r0"] == reference_generate(engine, _HISTORY, {}, 40)
    conversation = [*_HISTORY, Message("assistant", (text,), "r0"), _said(tone(5, 1.0))]
    await session.prefill(conversation)
    await run_reply(session, conversation, "r1", 8)
    assert session.generated["r1"] == reference_generate(engine, conversation, {"r0": session.generated["r0"]}, 8)
    await session.close()


async def test_a_failed_prefill_is_logged_and_leaves_the_session_usable(engine, monkeypatch):
    session, history = await _with_history(engine)
    conversation = [*history, _said(tone(6, 2.0))]

    def broken(samples: np.ndarray) -> None:
        raise RuntimeError("encoder down")

    monkeypatch.setattr(engine.encoder, "start", broken)
    with capture_logs() as logs:
        await session.prefill(conversation)
    assert [entry["event"] for entry in logs] == ["speculative prefill failed"]
    monkeypatch.undo()
    await run_reply(session, conversation, "r1", 8)
    assert session.generated["r1"] == reference_generate(engine, conversation, {"r0": session.generated["r0"]}, 8)
    await session.close()
    await session.prefill(conversation)  # after close: nothing to do, and no error


async def test_a_superseded_prefill_stops_at_its_next_chunk(engine):
    """A prefill works one chunk of positions at a time and stops, its cache consistent, once a newer request
    exists; the reply then takes over from where it stopped."""
    long = tone(5, 61.0)
    session, history = await _with_history(engine)
    conversation = [*history, _said(long)]
    session.wanted += 1
    job = SpeculationJob(
        session, conversation, (), Truncation(), session.wanted, asyncio.get_running_loop().create_future()
    )
    first_clip = None
    while first_clip is None or len(session.keys) < first_clip:  # the device loop is idle: run the steps here
        chunk = job.prepare_chunk(Budget(engine.prefill_chunk))
        if chunk is None:  # the step's room went to encoding audio
            continue
        _, logits = engine.runner.step([], [], [chunk])
        assert logits is not None
        job.take_chunk(logits[0])
        assert job.prefill is not None
        first_clip = job.prefill.rendered.clips[0].start + job.prefill.rendered.clips[0].length
    done_so_far = len(session.keys)
    assert job.phase() == "chunk", "three clips: more to do after the first"
    session.wanted += 1  # a newer request
    job.poll()
    assert job.phase() == "done"
    await asyncio.sleep(0)
    assert job.done.done() and len(session.keys) == done_so_far

    _, done = await run_reply(session, conversation, "r1", 8)  # the reply takes over from there
    assert done.usage.cached_tokens == done_so_far
    plain, _ = await _with_history(engine)
    await run_reply(plain, conversation, "r1", 8)
    assert session.generated["r1"] == plain.generated["r1"]
    await session.close()
    await plain.close()


async def test_a_cancelled_prefill_call_stops_its_work(engine, monkeypatch):
    """Cancelling the call (speech went on: the turn's audio will change) supersedes the prefill: queued, it
    computes nothing; the session's next request runs after it, unaffected."""
    session, history = await _with_history(engine)
    encoded: list[int] = []
    start = engine.encoder.start
    monkeypatch.setattr(engine.encoder, "start", lambda samples: encoded.append(samples.size) or start(samples))
    device = threading.Event()
    held = asyncio.ensure_future(engine.scheduler.call(device.wait))  # the device thread waits: nothing runs
    prefill = asyncio.create_task(session.prefill([*history, _said(tone(3, 61.0))]))
    await asyncio.sleep(0.05)  # the prefill is asked for, queued behind the wait
    prefill.cancel()
    with pytest.raises(asyncio.CancelledError):
        await prefill
    device.set()
    await held
    await session.prefill([*history, _said(tone(4, 2.0))])  # runs after the cancelled one's turn in line
    assert encoded == [32000], "only the later prefill's audio was encoded"
    _, done = await run_reply(session, [*history, _said(tone(4, 2.0))], "r1", 8)
    assert done.usage.input_tokens - done.usage.cached_tokens == 1, "the later prefill's work is all there"
    await session.close()
