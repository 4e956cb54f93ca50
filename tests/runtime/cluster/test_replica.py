"""An engine replica's bookkeeping, without Ray: which calls reuse a conversation's session and which rebuild it."""

from __future__ import annotations

from aural.runtime.cluster.replica import EngineReplica
from aural.runtime.engine.base import GenerationDone, Message, SamplingParams, SessionMemory
from tests.support.fake_engine import FakeEngine, Reply

PARAMS = SamplingParams(max_tokens=8)
HELLO = (Message("user", ("hello",), key="u1"),)


async def reply(replica: EngineReplica, conversation_id: str, epoch: int, memory: SessionMemory) -> GenerationDone:
    events = [event async for event in replica.generate(conversation_id, epoch, memory, HELLO, "r", PARAMS)]
    done = events[-1]
    assert isinstance(done, GenerationDone)
    return done


async def test_a_conversation_keeps_its_session_while_its_epoch_follows() -> None:
    engine = FakeEngine()
    replica = EngineReplica(lambda: engine)
    memory = SessionMemory()
    done = await reply(replica, "c1", 0, memory)
    memory = memory.after("r", done)
    await reply(replica, "c1", 1, memory)
    assert len(engine.sessions) == 1, "the second turn came at the epoch the first left: same session, same cache"
    assert replica.report().conversations == 1


async def test_a_conversation_back_from_elsewhere_is_rebuilt_from_its_memory() -> None:
    engine = FakeEngine()
    replica = EngineReplica(lambda: engine)
    await reply(replica, "c1", 0, SessionMemory())
    elsewhere = SessionMemory({"r": (1, 2, 3)}, window="u1")
    await reply(replica, "c1", 3, elsewhere)  # replies were generated on another replica meanwhile
    first, second = engine.sessions
    assert first.closed and not second.closed
    assert second.memory == elsewhere


async def test_cancel_stops_the_running_reply_and_close_frees_the_session() -> None:
    engine = FakeEngine()
    engine.script(Reply(endless=True, pause=0.01))
    replica = EngineReplica(lambda: engine)
    stream = replica.generate("c1", 0, SessionMemory(), HELLO, "r", PARAMS)
    await anext(stream)
    await replica.cancel("c1")
    events = [event async for event in stream]
    assert isinstance(events[-1], GenerationDone) and events[-1].reason == "cancelled"
    await replica.close("c1")
    assert engine.sessions[0].closed and replica.report().conversations == 0
