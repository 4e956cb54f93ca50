"""The Ray application's default conversation store: a named, detached actor that every ingress replica reaches.

A conversation whose ingress replica died (or that reconnects through another one: Serve's proxy spreads new
websockets over the ingress replicas) is resumed by id from it (`?aural.resume=<session id>`), as `aural serve
--store` resumes one on another server. It keeps what `MemoryStore` keeps, in the actor's memory, for as long as the
Ray cluster lives; a Redis store (`store: redis://...`) outlives the cluster too.
"""

from __future__ import annotations

import dataclasses

import ray

from ..session.snapshot import Snapshot
from ..store.base import Changes, ConversationMoved, Records, apply

STORE = "aural-conversations"
"""The store actor's name."""


@ray.remote(num_cpus=0)
class StoreActor:
    """The conversations, as `Records` (see `aural.runtime.store.base`)."""

    def __init__(self) -> None:
        self._conversations: dict[str, Records] = {}

    def save(self, session_id: str, changes: Changes) -> bool:
        """Apply `changes`; False when their writer no longer writes the conversation (nothing changed)."""
        try:
            self._conversations[session_id] = apply(self._conversations.get(session_id), changes)
        except ConversationMoved:
            return False
        return True

    def load(self, session_id: str) -> Records | None:
        return self._conversations.get(session_id)

    def delete(self, session_id: str, writer: str) -> None:
        stored = self._conversations.get(session_id)
        if stored is not None and stored.writer == writer:
            del self._conversations[session_id]


class ActorStore:
    """A `ConversationStore` on the store actor (created by the first ingress that asks)."""

    def __init__(self) -> None:
        self._actor = StoreActor.options(name=STORE, lifetime="detached", get_if_exists=True).remote()  # type: ignore[attr-defined]

    async def save(self, session_id: str, changes: Changes) -> None:
        audio = {item_id: bytes(blob) for item_id, blob in changes.audio.items()}  # a view does not pickle
        sent = dataclasses.replace(changes, audio=audio)
        if not await self._actor.save.remote(session_id, sent):
            raise ConversationMoved(f"another writer holds the conversation than {changes.writer}")

    async def load(self, session_id: str) -> Snapshot | None:
        records: Records | None = await self._actor.load.remote(session_id)
        return records.snapshot() if records is not None else None

    async def delete(self, session_id: str, writer: str) -> None:
        await self._actor.delete.remote(session_id, writer)
