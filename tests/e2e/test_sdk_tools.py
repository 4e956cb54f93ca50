"""The SDK's `@tool` functions against the real runtime: a named `tool_choice` makes the tiny model call
them, the SDK runs the calls (a coroutine on the loop, a plain function in a thread), sends the outputs and
streams the continuation; failures (an exception, a timeout) reach the server as error outputs."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Literal

import pytest
from pydantic import Field

from aural.protocols import ServerEvent
from aural.protocols.client_events import ConversationItemRetrieve
from aural.protocols.models import FunctionCallItem, FunctionCallOutputItem, MessageItem, OutputText, ToolChoiceFunction
from aural.protocols.server_events import ConversationItemAdded, ConversationItemRetrieved, Error
from aural.sdk import AuralResponseError, Connection, ResponseStream, Tools, tool
from tests.support.client import RECV_TIMEOUT

from .conftest import CALL_CAP, SdkConnect

pytestmark = pytest.mark.model

MAX_TOKENS = 160
"""Room for a call (its wrapper and arguments, bounded by the schemas below, in byte-level tokens)."""


@tool
async def weather(city: Annotated[str, Field(max_length=6)], unit: Literal["c", "f"]) -> dict[str, object]:
    """The forecast.

    Args:
        city: the city.
        unit: the unit.
    """
    return {"city": city, "temperature": 21, "unit": unit}


@tool
def clock(zone: Literal["utc", "cet"]) -> dict[str, str]:
    """The time in a zone, and the thread that told it."""
    return {"time": "12:00", "zone": zone, "thread": threading.current_thread().name}


@tool
def broken(code: Annotated[int, Field(ge=1, le=9)]) -> str:
    """Always fails."""
    raise RuntimeError(f"out of order ({code})")


@tool(timeout=0.05)
async def stuck(code: Annotated[int, Field(ge=1, le=9)]) -> str:
    """Never answers in time."""
    await asyncio.Event().wait()
    return "never"


@tool
def write(text: Annotated[str, Field(min_length=2 * CALL_CAP)]) -> str:
    """Writes a long text (a call needs more tokens than the per-call limit of `call_cap`)."""
    return "written"


@pytest.fixture
async def conn(sdk_connect: SdkConnect) -> AsyncIterator[tuple[Connection, list[ServerEvent]]]:
    """An SDK connection with the tools, whose session forbids calls unless a response asks for them
    (so that each continuation is text), and the events passed on to `on_event`."""
    passed_on: list[ServerEvent] = []
    tools = Tools([weather, clock, broken, stuck])
    async with sdk_connect(tools=tools) as conn:
        conn.on_event = passed_on.append
        await conn.update_session(tool_choice="none", max_output_tokens=MAX_TOKENS)
        await conn.add_message("user", text="Weather and time in Oslo?")
        yield conn, passed_on


def output_items(passed_on: list[ServerEvent]) -> list[FunctionCallOutputItem]:
    """The `function_call_output` items the server announced."""
    return [
        event.item
        for event in passed_on
        if isinstance(event, ConversationItemAdded) and isinstance(event.item, FunctionCallOutputItem)
    ]


async def call_and_continue(conn: Connection, name: str) -> tuple[ResponseStream, list[str]]:
    stream = conn.create_response(tool_choice=ToolChoiceFunction(name=name), parallel_tool_calls=False)
    async with asyncio.timeout(RECV_TIMEOUT):
        deltas = [delta async for delta in stream]
    return stream, deltas


def assert_continued(stream: ResponseStream, deltas: list[str], name: str) -> None:
    """One round of one call to `name`, answered, then a text continuation that was streamed."""
    first, second = stream.responses
    [call] = stream.tool_calls
    [item] = first.output
    assert isinstance(item, FunctionCallItem) and first.status == "completed"
    assert (call.name, call.call_id, call.arguments) == (name, item.call_id, item.arguments)
    assert second.status in ("completed", "incomplete") and stream.response == second
    [message] = second.output
    assert isinstance(message, MessageItem) and message.role == "assistant"
    [part] = message.content
    assert isinstance(part, OutputText)
    assert deltas and "".join(deltas) == stream.text == part.text
    assert stream.function_calls == []


async def retrieve(conn: Connection, item_id: str) -> FunctionCallOutputItem:
    await conn.send(ConversationItemRetrieve(item_id=item_id))
    async with asyncio.timeout(RECV_TIMEOUT):
        while not isinstance(event := await conn.recv(), ConversationItemRetrieved):
            pass
    assert isinstance(event.item, FunctionCallOutputItem)
    return event.item


async def test_async_and_sync_tools_are_run_and_the_responses_continued(
    conn: tuple[Connection, list[ServerEvent]],
) -> None:
    connection, passed_on = conn
    first, first_deltas = await call_and_continue(connection, "weather")
    assert_continued(first, first_deltas, "weather")
    [weather_call] = first.tool_calls
    arguments = json.loads(weather_call.arguments)
    assert weather_call.error is None
    assert json.loads(weather_call.output) == {"city": arguments["city"], "temperature": 21, "unit": arguments["unit"]}

    second, second_deltas = await call_and_continue(connection, "clock")
    assert_continued(second, second_deltas, "clock")
    [clock_call] = second.tool_calls
    told = json.loads(clock_call.output)
    assert (told["time"], told["zone"]) == ("12:00", json.loads(clock_call.arguments)["zone"])
    assert told["thread"] != threading.current_thread().name, "a plain function runs in a thread"

    sent = output_items(passed_on)
    assert [(item.call_id, item.output) for item in sent] == [
        (call.call_id, call.output) for call in (weather_call, clock_call)
    ]
    assert second.response is not None and second.response.usage is not None
    assert second.response.usage.input_token_details.cached_tokens > 0, "the conversation's cache is kept"


@pytest.mark.parametrize(("name", "error"), [("broken", "raised RuntimeError: out of order"), ("stuck", "0.05 s")])
async def test_a_failing_tool_sends_an_error_output_and_the_conversation_goes_on(
    conn: tuple[Connection, list[ServerEvent]], name: str, error: str
) -> None:
    connection, passed_on = conn
    stream, deltas = await call_and_continue(connection, name)
    assert_continued(stream, deltas, name)
    [call] = stream.tool_calls
    assert call.error is not None and error in call.error
    assert json.loads(call.output) == {"error": call.error}

    [announced] = output_items(passed_on)
    assert announced.id is not None
    kept = await retrieve(connection, announced.id)
    assert (kept.call_id, kept.output) == (call.call_id, call.output), "the server holds the error output"

    await connection.add_message("user", text="Never mind. Hello?")
    after = connection.create_response()
    async with asyncio.timeout(RECV_TIMEOUT):
        assert await after.collect()
    assert after.response is not None
    assert after.response.status in ("completed", "incomplete") and after.tool_calls == []


async def test_required_calls_are_all_answered_in_order(conn: tuple[Connection, list[ServerEvent]]) -> None:
    connection, passed_on = conn
    stream = connection.create_response(tool_choice="required", parallel_tool_calls=True)
    async with asyncio.timeout(RECV_TIMEOUT):
        await stream.collect()
    calls = [item for item in stream.responses[0].output if isinstance(item, FunctionCallItem)]
    assert calls, "`required` makes the model call"
    assert [call.call_id for call in stream.tool_calls] == [call.call_id for call in calls]
    assert len({call.call_id for call in calls}) == len(calls)
    assert [(item.call_id, item.output) for item in output_items(passed_on)] == [
        (call.call_id, call.output) for call in stream.tool_calls
    ]
    assert stream.response is not None and stream.response.status in ("completed", "incomplete")
    assert stream.function_calls == []


async def test_a_call_past_the_per_call_limit_raises_from_collect(sdk_connect: SdkConnect, call_cap: int) -> None:
    """`collect()` does not return "" as if nothing happened: it raises with the server's reason, which names
    the per-call limit; the `error` event goes to `on_event`, not to the next stream, which works."""
    passed_on: list[ServerEvent] = []
    async with sdk_connect(tools=Tools([write])) as conn:
        conn.on_event = passed_on.append
        await conn.add_message("user", text="Write it.")
        stream = conn.create_response(tool_choice=ToolChoiceFunction(name="write"))
        with pytest.raises(AuralResponseError) as raised:
            async with asyncio.timeout(RECV_TIMEOUT):
                await stream.collect()
        failure = raised.value
        assert failure.code == "tool_call_incomplete" and failure.error_type == "invalid_request_error"
        assert f"limit of {call_cap} tokens per function call" in failure.message
        assert failure.response is stream.response and failure.response.status == "failed"
        assert stream.tool_calls == [] and stream.function_calls == []
        [error] = [event for event in passed_on if isinstance(event, Error)]
        assert (error.error.code, error.error.message) == (failure.code, failure.message)

        after = conn.create_response(tool_choice="none", max_output_tokens=4)
        async with asyncio.timeout(RECV_TIMEOUT):
            await after.collect()
        assert after.response is not None and after.response.status in ("completed", "incomplete")
