"""The conversation stores, each against the same tests: saves after each change rebuild the conversation, audio is
written once per item, deletes and takeovers by another writer. The Redis store runs on a `redis-server` of the
test's own (`tests/support/redis.py`)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from aural.runtime.session.session import ConversationSession
from aural.runtime.session.snapshot import Snapshot
from aural.runtime.store import Changes, ConversationMoved, ConversationStore, MemoryStore
from aural.runtime.store.tracker import ChangeTracker
from tests.support.conversations import conversation_of_every_kind, respond
from tests.support.fake_engine import CAPABILITIES
from tests.support.redis import redis_server
from tests.support.session import send

OWNER = "key_1"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[ConversationStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    from aural.runtime.store.redis_store import RedisStore

    redis = RedisStore(request.getfixturevalue("redis_url"), prefix=f"test:{uuid.uuid4().hex}:")
    yield redis
    await redis.close()


class Saves:
    """One writer's saves of a session, recorded in order (`changes`) as the driver's saver makes them."""

    def __init__(self) -> None:
        self.changes: list[Changes] = []
        self.tracker: ChangeTracker | None = None

    def after(self, session: ConversationSession) -> None:
        if self.tracker is None:
            self.tracker = ChangeTracker(session, OWNER)
        if (changes := self.tracker.changes(f"evt_{len(self.changes)}")) is not None:
            self.changes.append(changes)

    async def flush(self, store: ConversationStore, session_id: str) -> None:
        for changes in self.changes:
            await store.save(session_id, changes)
        self.changes.clear()


def values(snapshot: Snapshot | None) -> tuple[Any, ...]:
    """A snapshot as comparable values."""
    assert snapshot is not None
    items = [
        (s.item.model_dump(), s.turn, {i: samples.tolist() for i, samples in s.audio.items()}) for s in snapshot.items
    ]
    ids = (snapshot.session_id, snapshot.conversation_id, snapshot.owner, snapshot.last_event_id)
    return ids, snapshot.config.model_dump(), items


async def saved(store: ConversationStore) -> tuple[ConversationSession, Saves]:
    """The conversation of every kind, saved after each of its changes."""
    saves = Saves()
    session = conversation_of_every_kind(saves.after)
    await saves.flush(store, session.id)
    return session, saves


async def test_saves_after_each_change_rebuild_the_conversation(store: ConversationStore) -> None:
    saves = Saves()
    session = conversation_of_every_kind(saves.after)
    recorded = list(saves.changes)
    await saves.flush(store, session.id)
    last = f"evt_{len(recorded) - 1}"
    assert values(await store.load(session.id)) == values(Snapshot.of(session, OWNER, last))
    assert [changes.whole for changes in recorded] == [True] + [False] * (len(recorded) - 1)
    assert [changes.takeover for changes in recorded] == [True] + [False] * (len(recorded) - 1)


async def test_audio_is_written_once_per_item_and_again_only_when_cut(store: ConversationStore) -> None:
    saves = Saves()
    session = conversation_of_every_kind(saves.after)
    written = Counter(item_id for changes in saves.changes for item_id in changes.audio)
    committed, several, *_ = (stored.id for stored in session.items)
    assert written == {committed: 2, several: 1}, "the committed turn's audio again when truncated"
    assert all(len(changes.items) <= 2 for changes in saves.changes[1:]), "each save writes the items it touched"


async def test_deleted_items_leave_the_store(store: ConversationStore) -> None:
    session, saves = await saved(store)
    committed = next(iter(session.items)).id
    send(session, type="conversation.item.delete", item_id=committed)
    saves.after(session)
    assert saves.changes[-1].deleted == {committed}
    await saves.flush(store, session.id)
    loaded = await store.load(session.id)
    assert loaded is not None and committed not in [stored.id for stored in loaded.items]
    assert values(loaded) == values(Snapshot.of(session, OWNER, loaded.last_event_id))


async def test_a_restored_session_saves_whole_then_only_its_changes(store: ConversationStore) -> None:
    session, _ = await saved(store)
    snapshot = await store.load(session.id)
    restored = ConversationSession("tiny", CAPABILITIES, restored=snapshot)
    saves = Saves()
    saves.after(restored)
    count = len(restored.items)
    respond(restored, "Going on.")
    saves.after(restored)
    first, second = saves.changes
    assert first.whole and len(first.items) == count and len(first.audio) == 2
    assert not second.whole and len(second.items) == 1 and not second.audio
    await saves.flush(store, session.id)
    assert values(await store.load(session.id)) == values(Snapshot.of(restored, OWNER, "evt_1"))


async def test_a_writer_taken_over_can_neither_save_nor_delete(store: ConversationStore) -> None:
    session, old = await saved(store)
    assert old.tracker is not None
    snapshot = await store.load(session.id)
    taken = ConversationSession("tiny", CAPABILITIES, restored=snapshot)
    new = Saves()
    new.after(taken)
    await new.flush(store, session.id)

    send(session, type="session.update", session={"instructions": "Stale."})
    old.after(session)
    old.tracker.forget(old.changes[-1])  # and a save that failed: the next is whole
    old.after(session)
    assert [(changes.whole, changes.takeover) for changes in old.changes] == [(False, False), (True, False)]
    for changes in old.changes:
        with pytest.raises(ConversationMoved):
            await store.save(session.id, changes)
    await store.delete(session.id, old.tracker.writer)
    loaded = await store.load(session.id)
    assert loaded is not None and loaded.config.instructions == "Answer briefly."
    assert new.tracker is not None
    await store.delete(session.id, new.tracker.writer)
    assert await store.load(session.id) is None


async def test_nothing_stored_loads_as_nothing(store: ConversationStore) -> None:
    assert await store.load("sess_never") is None
    await store.delete("sess_never", "writer_any")
    saves = Saves()
    session = ConversationSession("tiny", CAPABILITIES)
    saves.after(session)
    send(session, type="session.update", session={"instructions": "Hi."})
    saves.after(session)
    with pytest.raises(ConversationMoved):  # changes after a whole save that never reached the store
        await store.save(session.id, saves.changes[-1])
