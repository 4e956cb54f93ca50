"""`ResponseStream`: the text of one response, read from the connection as it is generated.

A response is matched to its request the way LiveKit does it: `response.create` carries
`metadata.client_event_id` (its own `event_id`), the server echoes the metadata in `response.created`,
and from then on the stream owns every event that names that response's id. Other events read
meanwhile (a response started by server-side turn detection, conversation and rate-limit events) go to
the connection's `on_event` callback.

With tools attached to the connection, one stream spans a whole tool round trip: when its response
completes with function calls, the stream runs them (`Connection.run_tools`), sends their outputs, asks
for the continuation with a new `response.create` (same parameters, but `tool_choice` left to the
session, so that a forced call is not forced again) and follows that response too, until one ends
without calls. Each round binds by its own `client_event_id`. After the tools' `max_rounds` rounds in a
row the continuation gets `tool_choice: "none"`, so that the model answers (the runtime's rule for its
own tools too); calls a response makes after that are left to the caller.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from aural.protocols import ServerEvent, new_id
from aural.protocols.client_events import ResponseCancel, ResponseCreate
from aural.protocols.models import FunctionCallItem, Response, ResponseParams
from aural.protocols.server_events import Error, ResponseCreated, ResponseDone, ResponseOutputTextDelta

from .errors import AuralError, AuralResponseError, AuralServerError
from .tools import ToolCall

if TYPE_CHECKING:
    from .connection import Connection

logger = logging.getLogger(__name__)

EventHandler = Callable[[ServerEvent], Awaitable[None] | None]
"""The type of `on_event`: a function or coroutine function taking a server event."""

CLIENT_EVENT_ID = "client_event_id"
"""The metadata key that ties `response.created` to the `response.create` that asked for it."""


def _continuation(params: ResponseParams, *, last: bool) -> ResponseParams:
    """The parameters of the response that continues a tool round: the same, but `tool_choice` left to the
    session, or "none" after the `last` round the tools allow in a row."""
    fields = {name: getattr(params, name) for name in params.model_fields_set - {"tool_choice"}}
    return ResponseParams.model_validate({**fields, "tool_choice": "none"} if last else fields)


def _response_id_of(event: ServerEvent) -> str | None:
    """The id of the response an event belongs to, if it belongs to one."""
    if isinstance(event, ResponseCreated | ResponseDone):
        return event.response.id
    response_id = getattr(event, "response_id", None)
    return response_id if isinstance(response_id, str) else None


class ResponseStream:
    """The text deltas of one response, as an async iterator of `str`. Made by `create_response`.

    The `response.create` request is sent when the stream is first used (iterated, collected,
    entered with `async with`). The stream reads events with `Connection.recv` until its
    `response.done`; use it to the end, or `cancel` it, before reading the connection otherwise.

        async with conn.create_response(instructions="Be brief.") as stream:
            async for delta in stream:
                print(delta, end="")
        print(stream.response.usage)

    `async with` cancels the response on exit if it has not finished (when the body raised or broke
    out of the loop).

    Across tool rounds (see the module's docstring) the stream yields the text of every round, in
    order, as one sequence: `text` and `collect()` are all of it, `response` is the last round's
    response and `responses` every round's; `tool_calls` lists the calls run and their outputs. A
    response that ends in calls the stream does not run (no tools attached, past `max_rounds`, or
    not completed) ends the stream: `function_calls` lists them, for `Connection.add_function_output`.

    Raises (while iterating):
        AuralResponseError: the response (a round's) ended `failed`; its text so far stays in `text`, the
            response in `response`.
        AuralServerError: an `error` event for the request, or any `error` before the server has
            acknowledged it with `response.created`.
        AuralConnectionError, AuralProtocolError: as for `Connection.recv`.
    """

    def __init__(self, conn: Connection, params: ResponseParams) -> None:
        self._conn = conn
        self._params = params
        self._prepare(params)
        self._sent = False
        self._failed = False
        self._cancelling = False
        self._deltas: list[str] = []
        self._responses: list[Response] = []
        self._tool_calls: list[ToolCall] = []
        self._final: Response | None = None

    def _prepare(self, params: ResponseParams) -> None:
        """Make the next `response.create` request, for `params`, with a fresh `event_id` its metadata names."""
        self._event_id = new_id("evt")
        metadata = {**(params.metadata or {}), CLIENT_EVENT_ID: self._event_id}
        self._request = ResponseCreate(
            event_id=self._event_id, response=params.model_copy(update={"metadata": metadata})
        )
        self._response_id: str | None = None
        self._cancel_sent = False

    @property
    def event_id(self) -> str:
        """The `event_id` of the `response.create` request (of the latest one, after a tool round)."""
        return self._event_id

    @property
    def response_id(self) -> str | None:
        """The server's id for the response (the latest round's), once `response.created` has been read."""
        return self._response_id

    @property
    def text(self) -> str:
        """The text received so far: all of it, once the stream is exhausted."""
        return "".join(self._deltas)

    @property
    def response(self) -> Response | None:
        """The final response from `response.done` (status, output items, usage), once read."""
        return self._final

    @property
    def responses(self) -> list[Response]:
        """Every round's response read so far, from `response.done`: one unless tools were run."""
        return list(self._responses)

    @property
    def tool_calls(self) -> list[ToolCall]:
        """The calls this stream ran with the connection's tools, and what it answered, in order."""
        return list(self._tool_calls)

    @property
    def function_calls(self) -> list[FunctionCallItem]:
        """The function calls of the final response, which nobody has answered yet."""
        output = self._final.output if self._final else []
        return [item for item in output if isinstance(item, FunctionCallItem)]

    @property
    def _finished(self) -> bool:
        return self._final is not None or self._failed

    async def _start(self) -> None:
        if not self._sent:
            await self._conn.send(self._request)
            self._sent = True

    async def _step(self) -> str | None:
        """Read one event and handle it; return its text if it is a text delta of this response."""
        try:
            event = await self._conn.recv()
        except AuralError:
            self._failed = True
            raise
        if isinstance(event, Error) and (self._response_id is None or event.error.event_id == self.event_id):
            self._failed = True
            raise AuralServerError.from_detail(event.error)
        if self._response_id is None:
            if isinstance(event, ResponseCreated) and self._is_ours(event.response):
                self._response_id = event.response.id
                return None
        elif _response_id_of(event) == self._response_id:
            if isinstance(event, ResponseOutputTextDelta):
                self._deltas.append(event.delta)
                return event.delta
            if isinstance(event, ResponseDone):
                await self._end_round(event.response)
            return None
        await self._pass_on(event)
        return None

    async def _end_round(self, response: Response) -> None:
        """Follow a response that ends in calls into its continuation, or end the stream with it."""
        self._responses.append(response)
        tools, rounds = self._conn.tools, len(self._responses)
        if not self._cancelling and tools is not None and rounds <= tools.max_rounds:
            calls = await self._conn.run_tools(response)
            if calls:
                self._tool_calls.extend(calls)
                self._prepare(_continuation(self._params, last=rounds == tools.max_rounds))
                await self._conn.send(self._request)
                return
        self._final = response
        if response.status == "failed" and not self._cancelling:
            raise AuralResponseError(response)

    def _is_ours(self, response: Response) -> bool:
        return (response.metadata or {}).get(CLIENT_EVENT_ID) == self.event_id

    async def _pass_on(self, event: ServerEvent) -> None:
        handler = self._conn.on_event
        if handler is None:
            logger.debug("dropping %s: not part of the response requested by %s", event.type, self.event_id)
            return
        result = handler(event)
        if inspect.isawaitable(result):
            await result

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> str:
        await self._start()
        while not self._finished:
            delta = await self._step()
            if delta is not None:
                return delta
        raise StopAsyncIteration

    async def collect(self) -> str:
        """Read the response to its end and return its whole text.

        Raises:
            AuralResponseError: the response ended `failed` (see the class's Raises).
        """
        async for _ in self:
            pass
        return self.text

    async def cancel(self) -> None:
        """Cancel the response (`response.cancel`) and read on until its `response.done`.

        Text that arrives meanwhile is still added to `text`. When the response ends before the cancel
        reaches the server, the server's `error` for the cancel goes to `on_event`. A no-op for a
        stream that was never started or has already finished.
        """
        if not self._sent:
            return
        self._cancelling = True
        while not self._finished:
            # The cancel must name the response, so it waits for `response.created`.
            if self._response_id is not None and not self._cancel_sent:
                await self._conn.send(ResponseCancel(response_id=self._response_id))
                self._cancel_sent = True
            await self._step()

    async def __aenter__(self) -> Self:
        await self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.cancel()
