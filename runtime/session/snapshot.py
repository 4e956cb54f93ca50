"""A conversation's durable state (`Snapshot`), and its byte form: JSON for the wire items and the configuration,
raw float32 for the audio, never pickle.

Durable: the session and conversation ids, the `key_id` of the key that opened it (`owner`), the configuration as
`session.update` left it, the items in order, each with the 16 kHz samples of its `input_audio` parts and its turn
(the reply key that joins a response's message and calls into the one turn the engine generated), and the
`event_id` of the last client event whose effect the state holds (a resuming client sends again what followed it).
A session restored from a snapshot (`ConversationSession(restored=...)`) answers the next events as the original
would: `conversation.item.retrieve`, `response.create` over the same messages, `session.update` from the same
configuration.

Not durable: the input audio not committed yet, a response in flight (its items stay out of the snapshot until it
ends), server tools' calls still running and the response that would continue them, transcriptions in progress,
and the engine's cache (the next response prefills the conversation again, rendering assistant turns from their
text rather than from the token ids the first engine produced).

Stores keep a snapshot as records, so that a change rewrites only what it touched (`aural.runtime.store`): a head
(`head_record`: ids, owner, configuration, the items' order), one record per item (`item_record`: the item, its
turn, its audio parts' lengths) and one audio blob per item with audio (`audio_blob`: its parts' samples end to
end), written once per item (again only when a truncation cuts its audio).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import TypeAdapter

from aural.protocols.models import Item, SessionConfig

from ..engine.base import AudioSamples
from .items import StoredItem, public

if TYPE_CHECKING:
    from .session import ConversationSession

FORMAT = 1
"""The version of the records' layout; a store refuses a snapshot of another."""
SAMPLE = np.dtype("<f4")
_ITEM: TypeAdapter[Item] = TypeAdapter(Item)

Blob = bytes | memoryview
"""Raw bytes: an audio blob is a read-only view of the live samples (no copy) until a store copies it; a view does not
pickle, so a store in another process sends `bytes(blob)`."""


@dataclass(frozen=True)
class Snapshot:
    """A conversation's durable state (see the module's docstring)."""

    session_id: str
    conversation_id: str
    owner: str | None
    config: SessionConfig
    items: tuple[StoredItem, ...]
    last_event_id: str | None = None

    @classmethod
    def of(cls, session: ConversationSession, owner: str | None, last_event_id: str | None = None) -> Snapshot:
        """The durable state of `session` as it stands (copies: the session goes on)."""
        items = tuple(StoredItem(public(s.item), dict(s.audio), s.turn) for s in durable_items(session))
        config = session.config.model_copy(deep=True)
        return cls(session.id, session.conversation_id, owner, config, items, last_event_id)

    def to_bytes(self) -> bytes:
        """One JSON line of the records, then the audio blobs end to end (`from_bytes` reads it back)."""
        blobs = {stored.id: blob for stored in self.items if (blob := audio_blob(stored)) is not None}
        offset, places = 0, {}
        for item_id, blob in blobs.items():
            places[item_id] = (offset, len(blob))
            offset += len(blob)
        records = {stored.id: json.loads(item_record(stored)) for stored in self.items}
        index = {"head": json.loads(head_record(self)), "items": records, "blobs": places}
        return b"".join([json.dumps(index, separators=(",", ":")).encode(), b"\n", *blobs.values()])

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Raises: ValueError for bytes that `to_bytes` did not make (or made in another `FORMAT`)."""
        line, _, tail = data.partition(b"\n")
        index = json.loads(line)
        view = memoryview(tail)
        blobs = {item_id: view[start : start + size] for item_id, (start, size) in index["blobs"].items()}
        return _snapshot(index["head"], index["items"], blobs)

    @classmethod
    def from_records(cls, head: bytes, items: Mapping[str, bytes], audio: Mapping[str, Blob]) -> Snapshot:
        """The snapshot a store's records make.

        Raises:
            ValueError: records of another `FORMAT`, or an item the head lists without its record.
        """
        return _snapshot(json.loads(head), {item_id: json.loads(record) for item_id, record in items.items()}, audio)


def durable_items(session: ConversationSession) -> Iterator[StoredItem]:
    """The session's items, less those of a response in flight (they are durable once it ends)."""
    running = session.response
    for stored in session.items:
        if running is None or stored.turn != running.item_id:
            yield stored


def head_record(snapshot: Snapshot) -> bytes:
    """The head: ids, owner, configuration and the items' order (of `snapshot.items`)."""
    head = {
        "format": FORMAT,
        "session_id": snapshot.session_id,
        "conversation_id": snapshot.conversation_id,
        "owner": snapshot.owner,
        "last_event_id": snapshot.last_event_id,
        "config": snapshot.config.model_dump(mode="json"),
        "items": [stored.id for stored in snapshot.items],
    }
    return json.dumps(head, separators=(",", ":")).encode()


def item_record(stored: StoredItem) -> bytes:
    """One item's record: the wire item, its turn and its audio parts' lengths in samples, by content index."""
    record = {
        "item": stored.item.model_dump(mode="json"),
        "turn": stored.turn,
        "audio": [[index, samples.size] for index, samples in sorted(stored.audio.items())],
    }
    return json.dumps(record, separators=(",", ":")).encode()


def audio_blob(stored: StoredItem) -> Blob | None:
    """The samples of an item's audio parts end to end, in content order, little-endian float32 (None: no audio).
    One part is a view of its samples, not a copy."""
    parts = [np.ascontiguousarray(samples, SAMPLE) for _, samples in sorted(stored.audio.items())]
    if not parts:
        return None
    joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return joined.data.cast("B")


def _snapshot(head: dict[str, Any], records: Mapping[str, Any], blobs: Mapping[str, Blob]) -> Snapshot:
    if head.get("format") != FORMAT:
        raise ValueError(f"A snapshot of format {head.get('format')!r}; this runtime reads format {FORMAT}.")
    missing = [item_id for item_id in head["items"] if item_id not in records]
    if missing:
        raise ValueError(f"The stored conversation lacks the records of items {missing}.")
    items = tuple(_item(records[item_id], blobs.get(item_id, b"")) for item_id in head["items"])
    config = SessionConfig.model_validate(head["config"])
    return Snapshot(head["session_id"], head["conversation_id"], head["owner"], config, items, head["last_event_id"])


def _item(record: Mapping[str, Any], blob: Blob) -> StoredItem:
    samples = np.frombuffer(blob, SAMPLE).astype(np.float32)  # a copy the session owns, in native order
    audio: dict[int, AudioSamples] = {}
    offset = 0
    for index, size in record["audio"]:
        audio[index] = samples[offset : offset + size]
        offset += size
    if offset != samples.size:
        raise ValueError("An item's audio blob does not hold its parts' samples.")
    return StoredItem(_ITEM.validate_python(record["item"]), audio, record["turn"])
