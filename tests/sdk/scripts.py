"""Server events for the fake server's scripts: responses of text, and responses that end in function calls."""

from __future__ import annotations

from typing import Any

from aural.protocols import ServerEvent
from aural.protocols.models import FunctionCallItem, Response, ResponseStatus, Usage
from aural.protocols.server_events import (
    ConversationItemAdded,
    ConversationItemDone,
    ResponseCreated,
    ResponseDone,
    ResponseFunctionCallArgumentsDelta,
    ResponseFunctionCallArgumentsDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
)

OURS = "resp_ours"
OTHER = "resp_other"


def metadata_of(request: dict[str, Any]) -> dict[str, str]:
    metadata: dict[str, str] = request["response"]["metadata"]
    return metadata


def created(request: dict[str, Any], response_id: str = OURS) -> ResponseCreated:
    """`response.created` echoing the request's metadata, as a conforming server does."""
    return ResponseCreated(response=Response(id=response_id, metadata=metadata_of(request)))


def delta(text: str, response_id: str = OURS) -> ResponseOutputTextDelta:
    return ResponseOutputTextDelta(
        response_id=response_id, item_id="item_a", output_index=0, content_index=0, delta=text
    )


def done(status: ResponseStatus, response_id: str = OURS, **fields: Any) -> ResponseDone:
    return ResponseDone(response=Response(id=response_id, status=status, **fields))


def full_response(request: dict[str, Any], parts: list[str], response_id: str = OURS) -> list[ServerEvent]:
    """The events of a completed text response: created, deltas, text done, done with usage."""
    text = "".join(parts)
    return [
        created(request, response_id),
        *(delta(part, response_id) for part in parts),
        ResponseOutputTextDone(response_id=response_id, item_id="item_a", output_index=0, content_index=0, text=text),
        done("completed", response_id, metadata=metadata_of(request), usage=Usage(input_tokens=7, output_tokens=3)),
    ]


def call_item(call_id: str, name: str, arguments: str) -> FunctionCallItem:
    return FunctionCallItem(id=f"item_{call_id}", call_id=call_id, name=name, arguments=arguments, status="completed")


def calls_response(
    request: dict[str, Any],
    calls: list[FunctionCallItem],
    response_id: str = OURS,
    status: ResponseStatus = "completed",
) -> list[ServerEvent]:
    """A response that ends in `calls`, event by event in the GA order.

    For each call: `response.output_item.added`, `conversation.item.added`, the arguments in two
    `response.function_call_arguments.delta`s, `.done`, `response.output_item.done`,
    `conversation.item.done`; then `response.done` listing every call.
    """
    events: list[ServerEvent] = [created(request, response_id)]
    for index, item in enumerate(calls):
        assert item.id is not None
        started = item.model_copy(update={"arguments": "", "status": "in_progress"})
        half = len(item.arguments) // 2
        arguments = [
            ResponseFunctionCallArgumentsDelta(
                response_id=response_id, item_id=item.id, output_index=index, call_id=item.call_id, delta=part
            )
            for part in (item.arguments[:half], item.arguments[half:])
        ]
        events += [
            ResponseOutputItemAdded(response_id=response_id, output_index=index, item=started),
            ConversationItemAdded(item=started),
            *arguments,
            ResponseFunctionCallArgumentsDone(
                response_id=response_id,
                item_id=item.id,
                output_index=index,
                call_id=item.call_id,
                name=item.name,
                arguments=item.arguments,
            ),
            ResponseOutputItemDone(response_id=response_id, output_index=index, item=item),
            ConversationItemDone(item=item),
        ]
    events.append(done(status, response_id, output=calls, metadata=metadata_of(request)))
    return events
