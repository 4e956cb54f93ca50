"""The order of one response's events, checked as a client reads them (PROTOCOL.md's reference sequence).

A response is `response.created`, then for each output item `response.output_item.added`,
`conversation.item.added`, `response.content_part.added`, its deltas, `response.output_text.done`,
`response.content_part.done`, `response.output_item.done` and `conversation.item.done`, and at last
`response.done`, whose output lists those items with the text their deltas made. `check_response` checks
all of it; with `whole=False` it checks the tail a resumed connection reads (from wherever the response
was when it took over).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aural.protocols.sequences import TEXT_TURN, server_types

Event = dict[str, Any]

_TEXT_TURN = server_types(TEXT_TURN)
ITEM_PHASES = tuple(_TEXT_TURN[_TEXT_TURN.index("response.created") + 1 : _TEXT_TURN.index("response.done")])
"""An output item's events in order (the reference text turn's); only deltas repeat."""
_PHASE = {event_type: index for index, event_type in enumerate(ITEM_PHASES)}
_DELTA = _PHASE["response.output_text.delta"]


@dataclass(frozen=True)
class CheckedResponse:
    """A response whose events came in order."""

    response_id: str
    status: str
    item_ids: list[str]
    texts: dict[str, str]
    """Each output item's streamed text, by item id (what the client read of it)."""


def _item_id(event: Event) -> str:
    item_id = event["item"]["id"] if "item" in event else event["item_id"]
    assert isinstance(item_id, str), event
    return item_id


def _response_id(event: Event) -> str:
    response_id = event["response"]["id"] if "response" in event else event["response_id"]
    assert isinstance(response_id, str), event
    return response_id


def check_response(events: list[Event], *, whole: bool = True) -> CheckedResponse:
    """Check one response's events, from `response.created` (`whole`) or from anywhere in it, to its
    `response.done`: every event names the response, each item's events come in order, and the response's
    output holds exactly its items, with the text of their deltas (or, for a tail, the text read ending it).

    Raises:
        AssertionError: naming the first event out of place.
    """
    assert events, "no events"
    if whole:
        assert events[0]["type"] == "response.created", events[0]
    done = events[-1]
    assert done["type"] == "response.done", done
    response_id = _response_id(done)
    phases: dict[str, int] = {}
    texts: dict[str, str] = {}
    for index, event in enumerate(events[1:-1] if whole else events[:-1], start=1 if whole else 0):
        kind = event["type"]
        assert kind in _PHASE, f"event {index}: {kind} within a response"
        if kind.startswith("response."):
            assert _response_id(event) == response_id, f"event {index}: {kind} of another response"
        item_id, phase = _item_id(event), _PHASE[kind]
        previous = phases.get(item_id)
        if previous is None:
            assert phase == 0 or not whole, f"event {index}: {kind} before its item was added"
        else:
            after = ITEM_PHASES[previous]
            assert phase > previous or phase == previous == _DELTA, f"event {index}: {kind} after {after}"
        phases[item_id] = phase
        if kind == "response.output_text.delta":
            texts[item_id] = texts.get(item_id, "") + event["delta"]
        elif kind == "response.output_text.done" and whole:
            assert event["text"] == texts.get(item_id, ""), f"event {index}: the done text is not the deltas'"
    unfinished = [item_id for item_id, phase in phases.items() if phase != len(ITEM_PHASES) - 1]
    assert not unfinished, f"items not done before response.done: {unfinished}"
    output = done["response"]["output"]
    item_ids = [item["id"] for item in output]
    assert set(phases) <= set(item_ids) and (not whole or item_ids == list(phases)), "response.done's output"
    if whole:
        for item in output:
            text = "".join(part.get("text", "") for part in item.get("content", []))
            assert text == texts.get(item["id"], ""), f"item {item['id']}: its final text is not its deltas'"
    return CheckedResponse(response_id, done["response"]["status"], item_ids, texts)


def responses_in(events: list[Event]) -> list[list[Event]]:
    """A connection's events cut into its responses (`response.created` to `response.done`); what lies between
    responses (session, input and conversation events) is left out.

    Raises:
        AssertionError: a response began inside another, or its event came outside one.
    """
    cut: list[list[Event]] = []
    current: list[Event] | None = None
    for event in events:
        kind = event["type"]
        if kind == "response.created":
            assert current is None, "a response began inside another"
            current = [event]
        elif current is not None:
            current.append(event)
            if kind == "response.done":
                cut.append(current)
                current = None
        else:
            assert not kind.startswith("response."), f"{kind} outside a response"
    assert current is None, "a response without its response.done"
    return cut
