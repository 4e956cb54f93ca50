"""One response's wire state: from `response.created` to `response.done`.

The assistant item appears with the first text (or at the end of an empty but finished reply without
calls), so a response that fails or is cancelled before saying anything leaves nothing in the
conversation. Function calls follow the text as their own output items (see `tool_calls`); the
message item is closed when the first call opens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import (
    CachedTokensDetails,
    InputTokenDetails,
    MessageItem,
    OutputText,
    OutputTokenDetails,
    Response,
    ResponseParams,
    StatusDetails,
    StatusError,
    TextPart,
    Usage,
)
from aural.protocols.server_events import ServerEventBase

from ..engine.base import GenerationDone, TokenUsage
from .tool_calls import CallRun
from .wire_errors import wire_error

_WIRE_CANCEL_REASONS = ("turn_detected", "client_cancelled")
_STATUS = {"stop": "completed", "length": "incomplete", "cancelled": "cancelled", "error": "failed"}


def wire_usage(usage: TokenUsage) -> Usage:
    """The GA `usage` of a generation: cached tokens are a subset of the input, each split into text and audio."""
    return Usage(
        total_tokens=usage.input_tokens + usage.output_tokens,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        input_token_details=InputTokenDetails(
            cached_tokens=usage.cached_tokens,
            text_tokens=usage.input_tokens - usage.audio_tokens,
            audio_tokens=usage.audio_tokens,
            cached_tokens_details=CachedTokensDetails(
                text_tokens=usage.cached_tokens - usage.cached_audio_tokens, audio_tokens=usage.cached_audio_tokens
            ),
        ),
        output_token_details=OutputTokenDetails(text_tokens=usage.output_tokens),
    )


@dataclass
class ResponseRun:
    """The wire state of the response being generated, with the parameters it was created with, the server
    tool rounds answered and continued in a row before it (`depth`) and the names of the client's tools it was
    offered (a call of one of them is the client's to answer, even where a server tool has that name)."""

    response: Response
    in_conversation: bool
    item_id: str
    params: ResponseParams
    depth: int = 0
    client_tools: frozenset[str] = frozenset()
    item: MessageItem | None = None
    previous_item_id: str | None = None
    text: str = ""
    cancel_reason: str | None = None
    output_index: int = 0
    closed: bool = False
    calls: dict[int, CallRun] = field(default_factory=dict)
    """The function calls of this response, by their index in the reply."""

    @property
    def id(self) -> str:
        return self.response.id

    def created(self) -> se.ResponseCreated:
        return se.ResponseCreated(response=self.response.model_copy(deep=True))

    def _open_item(self, previous_item_id: str | None) -> list[ServerEventBase]:
        self.previous_item_id = previous_item_id
        self.item = MessageItem(id=self.item_id, role="assistant", status="in_progress", content=[OutputText(text="")])
        self.output_index = len(self.response.output)
        self.response.output.append(self.item)
        item, index = self.item.model_copy(deep=True), self.output_index
        events: list[ServerEventBase] = [se.ResponseOutputItemAdded(response_id=self.id, output_index=index, item=item)]
        if self.in_conversation:
            events.append(se.ConversationItemAdded(item=item, previous_item_id=previous_item_id))
        events.append(
            se.ResponseContentPartAdded(
                response_id=self.id, item_id=self.item_id, output_index=index, content_index=0, part=TextPart()
            )
        )
        return events

    def delta(self, text: str, previous_item_id: str | None) -> list[ServerEventBase]:
        """Events for new text; the first text also opens the assistant item."""
        events = self._open_item(previous_item_id) if self.item is None else []
        assert self.item is not None
        self.text += text
        events.append(
            se.ResponseOutputTextDelta(
                response_id=self.id, item_id=self.item_id, output_index=self.output_index, content_index=0, delta=text
            )
        )
        return events

    def close_message(self, completed: bool) -> list[ServerEventBase]:
        """Close the message item (before a call, or at the end); nothing if none is open."""
        if self.item is None or self.closed:
            return []
        self.closed = True
        item_id, index = self.item_id, self.output_index
        self.item.status = "completed" if completed else "incomplete"
        self.item.content = [OutputText(text=self.text)]
        item = self.item.model_copy(deep=True)
        events: list[ServerEventBase] = [
            se.ResponseOutputTextDone(
                response_id=self.id, item_id=item_id, output_index=index, content_index=0, text=self.text
            ),
            se.ResponseContentPartDone(
                response_id=self.id,
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=TextPart(text=self.text),
            ),
            se.ResponseOutputItemDone(response_id=self.id, output_index=index, item=item),
        ]
        if self.in_conversation:
            events.append(se.ConversationItemDone(item=item, previous_item_id=self.previous_item_id))
        return events

    def done(self, result: GenerationDone, previous_item_id: str | None) -> list[ServerEventBase]:
        """Close the item (if any) and the response; `previous_item_id` places an item opened now."""
        status = _STATUS[result.reason]
        events: list[ServerEventBase] = []
        if self.item is None and not self.calls and not result.unnamed_call and status in ("completed", "incomplete"):
            events += self._open_item(previous_item_id)
        events += self.close_message(status == "completed")
        for call in self.calls.values():
            if not call.done:
                events += call.drop(self.response, self.in_conversation)
        self.response.status = status  # type: ignore[assignment]
        self.response.usage = wire_usage(result.usage)
        if status == "cancelled":
            reason = self.cancel_reason or "client_cancelled"
            wire_reason = reason if reason in _WIRE_CANCEL_REASONS else None  # the server's own (a shutdown): none
            self.response.status_details = StatusDetails(type="cancelled", reason=wire_reason)  # type: ignore[arg-type]
        elif status == "incomplete":
            self.response.status_details = StatusDetails(type="incomplete", reason="max_output_tokens")
        elif status == "failed":
            failure = (
                wire_error(result.error)
                if result.error
                else ProtocolError(ErrorCode.SERVER_ERROR, "The response failed.", error_type="server_error")
            )
            error = StatusError(type=failure.error_type, code=failure.code.value, message=failure.message)
            self.response.status_details = StatusDetails(type="failed", error=error)
        else:
            self.response.status_details = StatusDetails(type="completed")
        events.append(se.ResponseDone(response=self.response.model_copy(deep=True)))
        return events
