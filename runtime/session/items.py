"""The conversation's items, in order, with the decoded audio behind their audio parts.

The items one response produced (its message, its function calls) share a `turn`: the key under which
the engine keeps the reply's token ids, so they render as that one assistant turn. When one of them is
deleted the others lose their turn and render from their text instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import (
    FunctionCallItem,
    FunctionCallOutputItem,
    InputAudio,
    InputText,
    Item,
    MessageItem,
    OutputText,
)

from ..engine.base import AudioPart, AudioSamples, HistoryCall, Message, Part


@dataclass
class StoredItem:
    """A wire item plus the 16 kHz samples of its `input_audio` parts, by content index, and the turn
    (reply key) of the response that produced it."""

    item: Item
    audio: dict[int, AudioSamples] = field(default_factory=dict)
    turn: str | None = None

    @property
    def id(self) -> str:
        assert self.item.id is not None
        return self.item.id

    def to_message(self) -> Message:
        """The item as the engine sees it."""
        item = self.item
        if isinstance(item, FunctionCallItem):
            return Message("assistant", (), key=self.turn or "", tool_calls=(HistoryCall(item.name, item.arguments),))
        if isinstance(item, FunctionCallOutputItem):
            return Message("tool", (item.output,), key=self.id)
        parts: list[Part] = []
        for index, content in enumerate(item.content):
            if isinstance(content, InputText | OutputText):
                parts.append(content.text)
            elif isinstance(content, InputAudio):
                parts.append(AudioPart(f"{self.id}/{index}", self.audio[index]))
        key = (self.turn or "") if item.role == "assistant" else self.id
        return Message(item.role, tuple(parts), key=key)


def public(item: Item | None) -> Item:
    """A copy of an item safe to send or keep: events must not share mutable state."""
    assert item is not None
    return item.model_copy(deep=True)


def added(stored: StoredItem, previous: str | None) -> tuple[se.ConversationItemAdded, se.ConversationItemDone]:
    """The events that announce an item the conversation took whole."""
    item = public(stored.item)
    return (
        se.ConversationItemAdded(item=item, previous_item_id=previous),
        se.ConversationItemDone(item=item, previous_item_id=previous),
    )


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

    def check_calls(self, item: Item) -> None:
        """Raises: ProtocolError for a call output whose `call_id` no call in the conversation has, or a
        function call whose `call_id` is taken."""
        if isinstance(item, FunctionCallOutputItem) and self.find_call(item.call_id) is None:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"No function call with call_id '{item.call_id}' in the conversation.",
                param="item.call_id",
            )
        if isinstance(item, FunctionCallItem) and self.find_call(item.call_id) is not None:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE, f"call_id '{item.call_id}' is already used.", param="item.call_id"
            )

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

    def delete(self, item_id: str, *, detach: bool = True) -> None:
        """Delete an item. `detach` False: the engine dropped it from its turn's ids as well.

        Raises:
            ProtocolError: there is no such item.
        """
        stored = self.get(item_id)
        self._items.remove(stored)
        if detach and stored.turn is not None:  # the rest of its turn no longer matches the reply's token ids
            for other in self._items:
                if other.turn == stored.turn:
                    other.turn = None

    def find_call(self, call_id: str) -> StoredItem | None:
        """The function call item with `call_id`, if any."""
        return next(
            (s for s in self._items if isinstance(s.item, FunctionCallItem) and s.item.call_id == call_id), None
        )

    def messages(self) -> list[Message]:
        """The items as the engine sees them; the calls of one turn join the turn's message."""
        messages: list[Message] = []
        for stored in self._items:
            message = stored.to_message()
            last = messages[-1] if messages else None
            same_turn = last is not None and last.role == "assistant" and last.key == message.key
            if isinstance(stored.item, FunctionCallItem) and last is not None and same_turn:
                messages[-1] = replace(last, tool_calls=last.tool_calls + message.tool_calls)
            else:
                messages.append(message)
        return messages
