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

from ..engine.base import SAMPLE_RATE, AudioPart, AudioSamples, HistoryCall, Message, Part


@dataclass(frozen=True)
class ConversationBounds:
    """What one conversation may hold: what clients add past these is refused (`conversation_full`), so that
    no client can grow the server without end. A response's own items are never refused (`max_output_tokens`
    and the context bound them). The defaults hold far more than Qwen2-Audio's context can read at once.

    Args:
        items: items in the conversation.
        audio_seconds: decoded input audio kept in its items (16 kHz float32: 3.8 MB a minute).
        text_chars: characters of text, call arguments and call outputs in its items.
    """

    items: int = 4096
    audio_seconds: float = 60 * 60
    text_chars: int = 1 << 22


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

    def size(self) -> tuple[int, int]:
        """The samples of audio and the characters of text (arguments, outputs) the item holds."""
        item = self.item
        if isinstance(item, FunctionCallItem):
            chars = len(item.arguments) + len(item.name)
        elif isinstance(item, FunctionCallOutputItem):
            chars = len(item.output)
        else:
            chars = sum(len(part.text) for part in item.content if isinstance(part, InputText | OutputText))
        return sum(samples.size for samples in self.audio.values()), chars

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
    """Ordered items; ids are unique; `check_room` keeps what clients add within `bounds`; `take_touched` says
    which items changed (what a conversation store saves)."""

    def __init__(self, bounds: ConversationBounds | None = None) -> None:
        self.bounds = bounds or ConversationBounds()
        self._items: list[StoredItem] = []
        self._ids: dict[str, StoredItem] = {}
        self._samples = 0
        self._chars = 0
        self._touched: set[str] | None = None  # changed since the last `take_touched`; None: not asked yet

    def __iter__(self) -> Iterator[StoredItem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def take_touched(self) -> set[str]:
        """The ids of the items inserted, replaced, edited or deleted since the last call (the first call: every
        item's). Nothing is recorded before the first call, so that a conversation nobody saves keeps no record."""
        touched, self._touched = self._touched, set()
        return touched if touched is not None else set(self._ids)

    def _touch(self, item_id: str) -> None:
        if self._touched is not None:
            self._touched.add(item_id)

    def last_id(self) -> str | None:
        return self._items[-1].id if self._items else None

    def get(self, item_id: str, *, param: str = "item_id") -> StoredItem:
        """Raises: ProtocolError if there is no such item."""
        stored = self._ids.get(item_id)
        if stored is None:
            raise ProtocolError(ErrorCode.ITEM_NOT_FOUND, f"No conversation item with id '{item_id}'.", param=param)
        return stored

    def check_room(self, samples: int, chars: int, param: str | None = None) -> None:
        """Raises: ProtocolError (`conversation_full`) when one more item holding `samples` and `chars` would
        pass the bounds; nothing changes, and deleting items makes room."""
        bounds, problem = self.bounds, None
        if len(self._items) >= bounds.items:
            problem = f"holds {bounds.items} items, its most"
        elif self._samples + samples > bounds.audio_seconds * SAMPLE_RATE:
            problem = f"would hold more than {bounds.audio_seconds:g} s of input audio"
        elif self._chars + chars > bounds.text_chars:
            problem = f"would hold more than {bounds.text_chars} characters of text"
        if problem is not None:
            message = f"The conversation {problem}: delete items (conversation.item.delete) to make room."
            raise ProtocolError(ErrorCode.CONVERSATION_FULL, message, param=param)

    def insert(self, stored: StoredItem, previous_item_id: str | None = None) -> str | None:
        """Insert after `previous_item_id` (`"root"`: first; None: last). Returns the actual previous id.

        Raises:
            ProtocolError: duplicate id, or no item `previous_item_id`.
        """
        if stored.id in self._ids:
            raise ProtocolError(ErrorCode.INVALID_VALUE, f"Item id '{stored.id}' is already used.", param="item.id")
        if previous_item_id is None:
            position = len(self._items)
        elif previous_item_id == "root":
            position = 0
        else:
            position = self._items.index(self.get(previous_item_id, param="previous_item_id")) + 1
        self._items.insert(position, stored)
        self._keep(stored, 1)
        return self._items[position - 1].id if position > 0 else None

    def _keep(self, stored: StoredItem, sign: int) -> None:
        """Count an item in (1) or out (-1)."""
        samples, chars = stored.size()
        self._samples += sign * samples
        self._chars += sign * chars
        self._touch(stored.id)
        if sign > 0:
            self._ids[stored.id] = stored
        else:
            del self._ids[stored.id]

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
        current = self._ids.get(stored.id)
        if current is not None:
            self._items[self._items.index(current)] = stored
            self._keep(current, -1)
            self._keep(stored, 1)

    def set_transcript(self, item_id: str, index: int, transcript: str) -> None:
        """Keep the transcript of an input audio part, if the item is still there."""
        stored = self._ids.get(item_id)
        content = stored.item.content if stored is not None and isinstance(stored.item, MessageItem) else []
        if index < len(content) and isinstance(content[index], InputAudio):
            content[index] = InputAudio(transcript=transcript)
            self._touch(item_id)

    def delete(self, item_id: str, *, detach: bool = True) -> None:
        """Delete an item. `detach` False: the engine dropped it from its turn's ids as well.

        Raises:
            ProtocolError: there is no such item.
        """
        stored = self.get(item_id)
        self._items.remove(stored)
        self._keep(stored, -1)
        if detach and stored.turn is not None:  # the rest of its turn no longer matches the reply's token ids
            for other in self._items:
                if other.turn == stored.turn:
                    other.turn = None
                    self._touch(other.id)

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
