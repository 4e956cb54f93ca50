"""A conversation carried on by another session (a replica lost, the next turn opened on another one) from its
messages and a `SessionMemory` folded from the first session's `GenerationDone` events alone.

One conversation holds every kind of history a fresh session could render differently: audio and text turns,
a reply cut shorter than it was generated (barge-in, `conversation.item.truncate`), a function call and its
result, and a cut of the oldest turns (`Truncation`). At every turn a new session opened from the memory (sent
through pickle, as to another process) replies first, from an empty cache, then the first session replies as
it would have: the same tokens, float32 and greedy.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from aural.runtime.engine.base import (
    AudioPart,
    EngineSession,
    GenerationDone,
    GenerationEvent,
    HistoryCall,
    Message,
    SamplingParams,
    SessionMemory,
    TextDelta,
    ToolCallDone,
    ToolUse,
    Truncation,
)
from aural.runtime.engine.qwen2_audio.chat_format import Rendered
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from tests.support.engines import tone

from .test_tool_calls import NOTE, TOOLS

pytestmark = pytest.mark.model

CUT = Truncation("retention_ratio", retention_ratio=0.5, post_instructions=450)
"""Past 450 tokens after the system turn, the oldest turns go until half of that is left."""


@dataclass
class Conversation:
    """The messages and the memory the caller keeps, the session that holds them, and each handover's reply."""

    engine: TransformersEngine
    session: EngineSession
    messages: list[Message] = field(default_factory=list)
    memory: SessionMemory = field(default_factory=SessionMemory)
    handed_over: list[GenerationDone] = field(default_factory=list)

    async def turn(self, key: str, max_tokens: int = 12, tools: ToolUse | None = None) -> list[GenerationEvent]:
        """Reply in a new session opened from the memory, then in the first one; both must be the same."""
        params = SamplingParams(max_tokens=max_tokens, tools=tools, truncation=CUT)
        other = await self.engine.open_session(pickle.loads(pickle.dumps(self.memory)))
        *_, moved = await _reply(other, self.messages, key, params)
        await other.close()
        *events, done = await _reply(self.session, self.messages, key, params)
        assert isinstance(moved, GenerationDone) and isinstance(done, GenerationDone)
        assert moved.reply_ids == done.reply_ids and moved.reply_ids, key
        assert moved.usage.input_tokens == done.usage.input_tokens and moved.window == done.window
        assert moved.usage.cached_tokens == 0
        self.memory = self.memory.after(key, done)
        self.handed_over.append(moved)
        return events

    async def said(self, key: str, user: Sequence[str | AudioPart], keep: int | None = None) -> None:
        """A user turn and the reply to it, of which the history keeps the text of the first `keep` deltas."""
        self.messages.append(Message("user", tuple(user), key=f"u-{key}"))
        deltas = [event for event in await self.turn(key) if isinstance(event, TextDelta)]
        assert keep is None or keep < len(deltas)
        self.messages.append(Message("assistant", ("".join(d.text for d in deltas[:keep]),), key=key))


async def _reply(
    session: EngineSession, messages: Sequence[Message], key: str, params: SamplingParams
) -> list[GenerationEvent]:
    return [event async for event in session.generate(messages, key, params)]


async def test_another_session_continues_from_the_messages_and_the_memory(engine):
    chat = Conversation(engine, await engine.open_session(), [Message("system", ("Be brief.",), key="sys")])
    await chat.said("r0", [AudioPart("a0", tone(1, 1.3))])
    await chat.said("r1", [AudioPart("a1", tone(2, 0.7)), "What is this sound?"])
    await chat.said("r2", ["Tell me more, please: é, 你好."], keep=3)  # barge-in: the client got 3 deltas

    chat.messages.append(Message("user", ("Make a note.",), key="u-call"))
    events = await chat.turn("call", 200, ToolUse((NOTE,), "required", parallel=False))
    (call,) = [event for event in events if isinstance(event, ToolCallDone)]
    chat.messages += [
        Message("assistant", (), key="call", tool_calls=(HistoryCall(call.name, call.arguments),)),
        Message("tool", ('{"ok": true}',), key="out"),
    ]
    await chat.turn("answer", tools=ToolUse(TOOLS))
    chat.messages.append(Message("assistant", (engine.tokenizer.decode(chat.memory.replies["answer"]),), "answer"))

    for k in range(3, 9):
        await chat.said(f"r{k}", [AudioPart(f"a{k}", tone(k, 0.8)), f"Turn {k}: go on."])
    windows = [done.window for done in chat.handed_over]
    assert windows[0] is None and len(set(windows)) == 3, "the oldest turns went, twice"

    # What each part of the memory is for: without it, the same messages render to other ids.
    rendered = await _rendering(engine, chat.messages, chat.memory)
    assert rendered.ids != (await _rendering(engine, chat.messages, SessionMemory(window=chat.memory.window))).ids
    assert rendered.ids != (await _rendering(engine, chat.messages, SessionMemory(chat.memory.replies))).ids
    await chat.session.close()


async def _rendering(engine: TransformersEngine, messages: Sequence[Message], memory: SessionMemory) -> Rendered:
    """The conversation as a session opened from `memory` renders it for a reply."""
    session = await engine.open_session(memory)
    rendered = session.render_within(messages, session.reply_room(12), (), CUT)
    await session.close()
    return rendered
