"""The conversation store's interface (`ConversationStore`), what a save carries (`Changes`), and the store that
keeps conversations in this process's memory (`MemoryStore`).

A store keeps each conversation as records (`aural.runtime.session.snapshot`): a head, one record per item and one
audio blob per item with audio. A server saves a conversation after each change of its durable state: the first
save is whole, the next ones carry the head, the records of the items that changed and the audio of the items whose
audio changed, written once per item. Each server's copy of a conversation saves as its own `writer`, and its first
save takes the conversation over (`Changes.takeover`: whoever wrote it before); any other save, and a delete, by a
writer that another has since replaced changes nothing (`ConversationMoved`), so that a server still holding a
conversation that was resumed elsewhere can neither overwrite nor delete the new copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ..session.snapshot import Blob, Snapshot


class ConversationMoved(Exception):
    """A save by a writer that no longer writes the conversation: another server took it over, or it ended."""


@dataclass(frozen=True)
class Changes:
    """What one save writes of a conversation.

    Args:
        writer: the server copy that saves (one id for the life of a `ConnectionDriver`).
        whole: the changes hold the whole conversation: they replace what the store held.
        head: the conversation's head record (written by every save).
        items: the records of the items added or changed, by item id.
        audio: the audio blobs of the items whose audio is new, by item id.
        deleted: the ids of items gone, whose records and blobs go.
        takeover: whole changes that make `writer` the conversation's, whoever wrote it before.
    """

    writer: str
    whole: bool
    head: bytes
    items: Mapping[str, bytes] = field(default_factory=dict)
    audio: Mapping[str, Blob] = field(default_factory=dict)
    deleted: frozenset[str] = frozenset()
    takeover: bool = False

    @property
    def size(self) -> int:
        """The bytes the save writes."""
        blobs = sum(memoryview(blob).nbytes for blob in self.audio.values())
        return len(self.head) + sum(map(len, self.items.values())) + blobs


class ConversationStore(Protocol):
    """Where conversations outlive the server that holds them, so that another can resume them by id."""

    async def save(self, session_id: str, changes: Changes) -> None:
        """Apply `changes` to the stored conversation (see `Changes`).

        Raises:
            ConversationMoved: changes that are no takeover, from a writer that no longer writes the conversation
                (nothing changed).
        """
        ...

    async def load(self, session_id: str) -> Snapshot | None:
        """The stored conversation (None: none is stored under that id)."""
        ...

    async def delete(self, session_id: str, writer: str) -> None:
        """Forget the conversation, if `writer` still writes it."""
        ...


@dataclass
class Records:
    """One stored conversation: its writer, head, item records and audio blobs (`MemoryStore`'s value; a store that
    keeps conversations in a process of its own may keep these too)."""

    writer: str
    head: bytes
    items: dict[str, bytes]
    audio: dict[str, Blob]

    def snapshot(self) -> Snapshot:
        return Snapshot.from_records(self.head, self.items, self.audio)


def apply(stored: Records | None, changes: Changes) -> Records:
    """The records after `changes` (`stored` changes in place unless the changes are whole).

    Raises:
        ConversationMoved: as `ConversationStore.save` says.
    """
    if not changes.takeover and (stored is None or stored.writer != changes.writer):
        raise ConversationMoved(f"another writer holds the conversation than {changes.writer}")
    if changes.whole or stored is None:
        return Records(changes.writer, changes.head, dict(changes.items), dict(changes.audio))
    stored.head = changes.head
    for item_id in changes.deleted:
        stored.items.pop(item_id, None)
        stored.audio.pop(item_id, None)
    stored.items.update(changes.items)
    stored.audio.update(changes.audio)
    return stored


class MemoryStore:
    """Conversations kept in this process's memory: for servers that share a process (tests, the in-process
    runtime) and as the model of a store. Audio blobs are views of the live samples, not copies."""

    def __init__(self) -> None:
        self.conversations: dict[str, Records] = {}

    async def save(self, session_id: str, changes: Changes) -> None:
        self.conversations[session_id] = apply(self.conversations.get(session_id), changes)

    async def load(self, session_id: str) -> Snapshot | None:
        stored = self.conversations.get(session_id)
        return stored.snapshot() if stored is not None else None

    async def delete(self, session_id: str, writer: str) -> None:
        stored = self.conversations.get(session_id)
        if stored is not None and stored.writer == writer:
            del self.conversations[session_id]
