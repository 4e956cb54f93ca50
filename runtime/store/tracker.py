"""What changed in one conversation's durable state since its last save, as the `Changes` a store applies.

The conversation says which items were touched (`Conversation.take_touched`) and the session replaces its
configuration on every update, so a save costs what changed, not the conversation's size: the head (order,
configuration), the records of the touched items, and audio only for an item whose audio is new since the last
save (an item's samples never change in place; a truncated part is a new array, whose blob is written again).
"""

from __future__ import annotations

from aural.protocols.models import SessionConfig
from aural.protocols.server_events import new_id

from ..engine.base import AudioSamples
from ..session.items import StoredItem
from ..session.session import ConversationSession
from ..session.snapshot import Snapshot, audio_blob, durable_items, head_record, item_record
from .base import Changes


class ChangeTracker:
    """Turns one session's changes into `Changes`, as one writer (`writer`).

    Args:
        session: the conversation.
        owner: the `key_id` of the key that opened it (None without keys).
    """

    def __init__(self, session: ConversationSession, owner: str | None) -> None:
        self.writer = new_id("writer")
        self.session_id = session.id
        self._session = session
        self._owner = owner
        self._saved: dict[str, dict[int, AudioSamples]] | None = None  # item id → audio saved; None: nothing saved
        self._order: list[str] = []
        self._config: SessionConfig | None = None
        self._takeover = True  # until changes reached the store

    def forget(self, failed: Changes) -> None:
        """`failed`, the last changes, did not reach the store: the next ones are whole (and a takeover if those
        were)."""
        self._saved = None
        self._takeover = failed.takeover

    def changes(self, last_event_id: str | None) -> Changes | None:
        """What changed since the last call (None: nothing durable); whole at the first call and after `forget`, a
        takeover at the first call (this writer takes the conversation over, wherever it was before).

        Args:
            last_event_id: the `event_id` of the last client event the session took.
        """
        session, saved = self._session, self._saved
        touched = session.items.take_touched()
        if saved is not None and not touched and session.config is self._config:
            return None
        items = tuple(durable_items(session))
        order = [stored.id for stored in items]
        whole = saved is None
        saved = self._saved = {} if saved is None else saved
        written = [stored for stored in items if whole or stored.id in touched]
        deleted = frozenset(item_id for item_id in touched if item_id in saved) - set(order)
        if not (whole or written or deleted or order != self._order or session.config is not self._config):
            return None  # only a response in flight changed
        for item_id in deleted:
            del saved[item_id]
        audio = {}
        for stored in written:
            if self._new_audio(stored) and (blob := audio_blob(stored)) is not None:
                audio[stored.id] = blob
        snapshot = Snapshot(session.id, session.conversation_id, self._owner, session.config, items, last_event_id)
        self._order, self._config = order, session.config
        records = {stored.id: item_record(stored) for stored in written}
        takeover, self._takeover = self._takeover, False
        return Changes(self.writer, whole, head_record(snapshot), records, audio, deleted, takeover)

    def _new_audio(self, stored: StoredItem) -> bool:
        """Whether the item's audio differs from what was saved of it; it is saved from now on."""
        assert self._saved is not None
        before = self._saved.get(stored.id)
        self._saved[stored.id] = dict(stored.audio)
        if before is None or before.keys() != stored.audio.keys():
            return True
        return any(before[index] is not samples for index, samples in stored.audio.items())
