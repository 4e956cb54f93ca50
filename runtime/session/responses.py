"""The running response: its start, the engine's progress on it, its cancellation and its end.

One response runs at a time. Its text and function calls stream as wire events (`response_run`,
`tool_calls`) and land in the conversation as its items (the assistant message, each call), which share
the response's reply key so that the engine renders them as the one turn it generated. After a cancel
nothing more is sent, so the assistant item holds exactly the text the client received. When the engine
ends the response, `progress` hands the finished run back: what follows (server tools, a turn that waited,
the idle timer) is the router's decision.
"""

from __future__ import annotations

from typing import Literal

from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import RateLimit, Response, ResponseParams, SessionConfig
from aural.protocols.server_events import ServerEventBase, new_id

from ..engine.base import (
    GenerationDone,
    GenerationEvent,
    Message,
    SamplingParams,
    TextDelta,
    ToolCallDelta,
    ToolCallDone,
    ToolUse,
)
from .commands import CancelResponse, StartResponse, Step, emit, order
from .config import engine_truncation
from .items import Conversation, StoredItem, public
from .response_run import ResponseRun
from .tool_calls import CallRun, client_tools
from .wire_errors import error_event, wire_code, wire_error


class Responses:
    """The response being generated, if any, and what it does to the conversation.

    Args:
        items: the conversation, where an in-conversation response's items go.
        context_window: the model's context in tokens, reported after each response (`rate_limits.updated`).
        conversation_id: the conversation's id, which in-conversation responses name.
    """

    def __init__(self, items: Conversation, context_window: int, conversation_id: str) -> None:
        self._items = items
        self._context_window = context_window
        self._conversation_id = conversation_id
        self.running: ResponseRun | None = None

    def begin(
        self,
        params: ResponseParams,
        config: SessionConfig,
        tools: ToolUse | None,
        max_tokens: int | Literal["inf"] | None,
        conversation: list[Message],
        depth: int,
    ) -> Step:
        """Start a response (none may be running) over `conversation` with `params`, the session's `config`
        filling in what they leave out: `response.created`, and the command that generates it.

        Args:
            depth: server tool rounds answered and continued in a row before this response.
        """
        assert self.running is None
        in_conversation = params.conversation != "none"
        instructions = params.instructions if params.instructions is not None else config.instructions
        temperature = params.temperature if params.temperature is not None else config.temperature
        top_p = params.top_p if params.top_p is not None else config.top_p
        sampling = SamplingParams(
            max_tokens=max_tokens if isinstance(max_tokens, int) else None,
            temperature=temperature or 0.0,
            top_p=top_p or 1.0,
            tools=tools,
            truncation=engine_truncation(config.truncation),
        )
        response = Response(
            id=new_id("resp"),
            conversation_id=self._conversation_id if in_conversation else None,
            max_output_tokens=max_tokens,
            metadata=params.metadata,
        )
        conversation = with_instructions(conversation, instructions)
        client = frozenset(tool.name for tool in client_tools(params, config))
        run = ResponseRun(response, in_conversation, new_id("item"), params, depth, client)
        self.running = run
        return Step((run.created(),), (StartResponse(run.id, run.item_id, conversation, sampling, in_conversation),))

    def cancel(self, reason: str) -> Step:
        """Stop the running response for `reason` (nothing more is asked of a response already stopping)."""
        run = self.running
        if run is None or run.cancel_reason is not None:
            return Step()
        run.cancel_reason = reason
        return order(CancelResponse(run.id))

    def progress(self, response_id: str, event: GenerationEvent) -> tuple[Step, ResponseRun | None]:
        """The engine went on with response `response_id`; returns the events, and the run once it ended."""
        run = self.running
        if run is None or run.id != response_id:
            return Step(), None
        if isinstance(event, TextDelta):
            return self._text(run, event.text), None
        if isinstance(event, GenerationDone):
            return self._done(run, event), run
        return self._call(run, event), None

    def _text(self, run: ResponseRun, text: str) -> Step:
        if not text or run.cancel_reason is not None:
            return Step()
        opening = run.item is None
        events = run.delta(text, self._items.last_id())
        if opening and run.in_conversation:
            self._items.insert(StoredItem(public(run.item), turn=run.item_id))
        return emit(*events)

    def _call(self, run: ResponseRun, event: ToolCallDelta | ToolCallDone) -> Step:
        events: list[ServerEventBase] = []
        call = run.calls.get(event.index)
        if call is None:
            events += run.close_message(completed=True)
            if run.item is not None and run.in_conversation:
                self._items.replace(StoredItem(public(run.item), turn=run.item_id))
            call, opened = CallRun.open(run.response, event.name, self._items.last_id(), run.in_conversation)
            run.calls[event.index] = call
            events += opened
            if run.in_conversation:
                self._items.insert(StoredItem(public(call.item), turn=run.item_id))
        if isinstance(event, ToolCallDelta):
            return emit(*events, *(call.delta(run.id, event.arguments) if event.arguments else []))
        events += call.finish(run.id, event.arguments, run.in_conversation)
        if run.in_conversation:
            self._items.replace(StoredItem(public(call.item), turn=run.item_id))
        return emit(*events)

    def _done(self, run: ResponseRun, result: GenerationDone) -> Step:
        """Close the response (completed, cut, cancelled or failed) and keep its items.

        An `error` that says why the response failed or lost a call comes just before its `response.done`, so
        that a client that stops reading at `response.done` (the SDK's streams) leaves none behind it.
        """
        opening = run.item is None
        *events, response_done = run.done(result, self._items.last_id())
        self.running = None
        if run.item is not None and run.in_conversation:
            final = StoredItem(public(run.item), turn=run.item_id)
            if opening:
                self._items.insert(final)
            else:
                self._items.replace(final)
        cut = [call for call in run.calls.values() if not call.done]
        for call in cut if run.in_conversation else []:
            self._items.delete(call.item_id, detach=False)  # the engine cut its tokens from the turn
        if (cut or result.unnamed_call) and result.reason == "length":
            what = f"The call of '{cut[0].item.name}'" if cut else "A function call"
            before = "it was complete" if cut else "its name was complete"
            message = (
                f"{what} was cut off at the output token limit before {before}, so it was dropped: "
                "raise max_output_tokens or simplify the function's parameters."
            )
            events.append(error_event(ProtocolError(ErrorCode.TOOL_CALL_INCOMPLETE, message)))
        if result.error is not None and wire_code(result.error) is not ErrorCode.SERVER_ERROR:
            events.append(error_event(wire_error(result.error)))
        events.append(response_done)
        used = result.usage.input_tokens + result.usage.output_tokens
        if run.in_conversation and used:  # directly after response.done, as OpenAI sends it
            remaining = max(0, self._context_window - used)
            if result.kv_room is not None:  # the server's KV pool may be fuller than the context
                remaining = min(remaining, result.kv_room)
            room = RateLimit(name="tokens", limit=self._context_window, remaining=remaining, reset_seconds=0.0)
            events.append(se.RateLimitsUpdated(rate_limits=[room]))
        return emit(*events)


def with_instructions(conversation: list[Message], instructions: str | None) -> list[Message]:
    """`conversation` after the system turn that `instructions` make (none without them)."""
    if not instructions:
        return conversation
    return [Message("system", (instructions,), key=f"instructions:{instructions}"), *conversation]
