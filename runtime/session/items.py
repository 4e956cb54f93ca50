"""The conversation's items, in order, with the decoded audio behind their audio parts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import InputAudio, InputText, Item, MessageItem, OutputText

from ..engine.base import AudioPart, AudioSamples, Message, Part


@dataclass
class StoredItem:
    """A wire item plus the 16 kHz samples of its `input_audio` parts, by content index."""

    item: Item
    audio: dict[int, AudioSamples] = field(default_factory=dict)

    @property
    def id(self) -> str:
        assert self.item.id is not None
        return self.item.id

    def to_message(self) -> Message:
        """The item as the engine sees it."""
        item = self.item
        assert isinstance(item, MessageItem), "only message items are stored"
        parts: list[Part] = []
        for index, content in enumerate(item.content):
            if isinstance(content, InputText | OutputText):
                parts.append(content.text)
            elif isinstance(content, InputAudio):
                parts.append(AudioPart(f"{self.id}/{index}", self.audio[index]))
        return Message(item.role, tuple(parts), key=self.id)


class Conversation:
    """Ordered items; ids are unique."""

    def __init__(self) -> None:
        self._items: list[StoredItem] = []

    def __iter__(self) -> Iterator[StoredItem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def get(self, item_id: str, *, param: str = "item_id") -> StoredItem:
        """Raises: ProtocolError if there is no such item."""
        for stored in self._items:
            if stored.id == item_id:
                return stored
        raise ProtocolError(ErrorCode.ITEM_NOT_FOUND, f"No conversation item with id '{item_id}'.", param=param)

    def insert(self, stored: StoredItem, previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` (`"root"`: first; None: last). Returns the actual previous id.

        Raises:
            ProtocolError: duplicate id, or no item `previous_item_id`.
        """
        if any(s.id == stored.id for s in self._items):
            raise ProtocolError(ErrorCode.INVALID_VALUE, f"Item id '{stored.id}' is already used.", param="item.id")
        if previous_item_id is None:
            position = len(self._items)
        elif previous_item_id == "root":
            position = 0
        else:
            position = self._items.index(self.get(previous_item_id, param="previous_item_id")) + 1
        self._items.insert(position, stored)
        return self._items[position - 1].id if position > 0 else None

    def replace(self, stored: StoredItem) -> None:
        """Replace the item with the same id, if it is still there (the client may have deleted it)."""
        for index, current in enumerate(self._items):
            if current.id == stored.id:
                self._items[index] = stored

    def set_transcript(self, item_id: str, index: int, transcript: str) -> None:
        """Keep the transcript of an input audio part, if the item is still there."""
        for stored in self._items:
            content = stored.item.content if isinstance(stored.item, MessageItem) else []
            if stored.id == item_id and index < len(content) and isinstance(content[index], InputAudio):
                content[index] = InputAudio(transcript=transcript)

    def delete(self, item_id: str) -> None:
        """Raises: ProtocolError if there is no such item."""
        self._items.remove(self.get(item_id))

    def messages(self) -> list[Message]:
        return [stored.to_message() for stored in self._items]
