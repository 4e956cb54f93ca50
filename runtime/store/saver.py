"""Keeping one conversation's stored copy up to date, in the background (`Saver`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .base import ConversationMoved, ConversationStore
from .tracker import ChangeTracker


class Saver:
    """Saves a conversation after its changes: `changed()` after each input the session took; saves run one at a
    time, each writing what changed since the one before, so that a slow store delays the stored copy (changes
    coalesce) and never the conversation. The first save takes the conversation over: this server writes it from
    then on, wherever it was before.

    A failed save is logged, and the next one is whole. Once another server took the conversation over
    (`ConversationMoved`), nothing more is saved.

    Args:
        store: where the conversation is kept.
        tracker: the conversation's changes.
        last_event_id: the `event_id` of the last client event the session handled, when a save starts.
        handling: held while a client event is handled (its effect may come in steps): a save's changes are taken
            between two events, so that the stored state holds exactly the effects of the events up to `last_event_id`.
        logger: the connection's logger.
    """

    def __init__(
        self,
        store: ConversationStore,
        tracker: ChangeTracker,
        last_event_id: Callable[[], str | None],
        handling: asyncio.Lock,
        logger: Any,
    ) -> None:
        self._store = store
        self._tracker = tracker
        self._last_event_id = last_event_id
        self._handling = handling
        self._log = logger
        self._session_id = tracker.session_id
        self._wake = asyncio.Event()
        self._wake.set()
        self._closing = False
        self._keep = True
        self._moved = False
        self._task = asyncio.create_task(self._run(), name=f"saver {self._session_id}")

    def changed(self) -> None:
        """The conversation may have changed: save what did, once the save in progress is done."""
        self._wake.set()

    async def close(self, *, keep: bool) -> None:
        """Stop saving, after the save in progress: with a last save (`keep`, for a server that goes away while the
        conversation waits for a resume), or deleting the stored copy (the conversation ended)."""
        self._closing, self._keep = True, keep
        self._wake.set()
        await asyncio.wait([self._task])
        if not keep:
            try:
                await self._store.delete(self._session_id, self._tracker.writer)
            except Exception:
                self._log.exception("deleting the stored conversation failed")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            closing = self._closing  # a close during the save wakes this loop for one more
            if closing and not self._keep:
                return
            await self._save()
            if closing:
                return

    async def _save(self) -> None:
        if self._moved:
            return
        async with self._handling:
            changes = self._tracker.changes(self._last_event_id())
        if changes is None:
            return
        try:
            await self._store.save(self._session_id, changes)
        except ConversationMoved:
            self._moved = True
            self._log.warning("conversation taken over by another server: no longer saved here")
        except Exception:
            self._tracker.forget(changes)
            self._log.exception("saving the conversation failed")
