"""Tool round trips against the scripted fake server: calls run, outputs sent, the response continued."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from aural.protocols import ServerEvent
from aural.protocols.models import FunctionCallItem, ResponseStatus
from aural.protocols.server_events import ConversationItemAdded, ConversationItemDone, ResponseDone
from aural.sdk import AuralResponseError, Tools, connect, tool
from tests.sdk.scripts import call_item, calls_response, created, delta, done, full_response

if TYPE_CHECKING:
    from tests.sdk.conftest import FakeServer


@tool
async def get_weather(city: str) -> dict[str, Any]:
    """The current weather in a city."""
    return {"city": city, "celsius": 21}


@tool
def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b


WEATHER = call_item("call_w", "get_weather", '{"city": "Lisbon"}')
SUM = call_item("call_s", "add", '{"a": 2, "b": 40}')

Script = Callable[[dict[str, Any]], list[ServerEvent]]


def rounds(server: FakeServer, *scripts: Script) -> None:
    """Answer the n-th `response.create` with the n-th script, as response `resp_<n>`."""
    answers = iter(scripts)
    server.responders["response.create"] = lambda request: next(answers)(request)


def ends_in(calls: list[FunctionCallItem], status: ResponseStatus = "completed") -> Script:
    return lambda request: calls_response(request, calls, f"resp_{request['event_id']}", status)


def says(text: str) -> Script:
    return lambda request: full_response(request, [text], f"resp_{request['event_id']}")


def outputs(server: FakeServer) -> list[tuple[str, str]]:
    """The (call_id, output) of each function output the client sent."""
    items = [event["item"] for event in server.of_type("conversation.item.create")]
    assert all(item["type"] == "function_call_output" for item in items)
    return [(item["call_id"], item["output"]) for item in items]


async def test_connecting_with_tools_sends_their_definitions(server: FakeServer) -> None:
    async with connect(server.url, tools=Tools([get_weather, add])):
        pass
    await server.finished()
    [update] = server.received
    assert update["type"] == "session.update"
    assert update["session"]["tools"] == [item.definition.model_dump(exclude_none=True) for item in (get_weather, add)]


async def test_a_response_ending_in_calls_is_answered_and_continued(server: FakeServer) -> None:
    def first(request: dict[str, Any]) -> list[ServerEvent]:
        events = ends_in([WEATHER, SUM])(request)
        return [events[0], delta("Let me check. ", f"resp_{request['event_id']}"), *events[1:]]

    rounds(server, first, says("It is 21 C; the sum is 42."))
    elsewhere: list[ServerEvent] = []
    async with connect(server.url, tools=Tools([get_weather, add]), on_event=elsewhere.append) as conn:
        stream = conn.create_response(instructions="Be brief.")
        deltas = [text async for text in stream]
    await server.finished()

    assert deltas == ["Let me check. ", "It is 21 C; the sum is 42."]
    assert stream.text == "Let me check. It is 21 C; the sum is 42."
    assert [event["type"] for event in server.received] == [
        "session.update",
        "response.create",
        "conversation.item.create",
        "conversation.item.create",
        "response.create",
    ]
    assert outputs(server) == [("call_w", '{"city":"Lisbon","celsius":21}'), ("call_s", "42")]
    first_request, second_request = server.of_type("response.create")
    assert second_request["event_id"] == stream.event_id != first_request["event_id"]
    assert second_request["response"] == {
        "instructions": "Be brief.",
        "metadata": {"client_event_id": stream.event_id},
    }
    assert [response.id for response in stream.responses] == [
        f"resp_{first_request['event_id']}",
        f"resp_{second_request['event_id']}",
    ]
    assert stream.response == stream.responses[-1]
    assert [(call.name, call.output, call.error) for call in stream.tool_calls] == [
        ("get_weather", '{"city":"Lisbon","celsius":21}', None),
        ("add", "42", None),
    ]
    assert stream.function_calls == []
    # The conversation events of the calls are not the stream's: they go to on_event.
    assert [type(event) for event in elsewhere] == [ConversationItemAdded, ConversationItemDone] * 2


async def test_failed_calls_are_answered_with_errors_and_continued(server: FakeServer) -> None:
    @tool
    def explode() -> str:
        raise RuntimeError("the tool broke")

    calls = [
        call_item("call_1", "explode", "{}"),
        call_item("call_2", "nowhere", "{}"),
        call_item("call_3", "add", '{"a": "two"}'),
    ]
    rounds(server, ends_in(calls), says("Sorry."))
    async with connect(server.url, tools=Tools([explode, add])) as conn:
        assert await conn.create_response().collect() == "Sorry."
    await server.finished()
    sent = outputs(server)
    assert [call_id for call_id, _ in sent] == ["call_1", "call_2", "call_3"]
    errors = [json.loads(output)["error"] for _, output in sent]
    assert errors[0] == "explode raised RuntimeError: the tool broke"
    assert errors[1].startswith("unknown tool 'nowhere'")
    assert "a: Input should be a valid integer" in errors[2] and "b: Field required" in errors[2]
    assert len(server.of_type("response.create")) == 2


async def test_the_calls_of_one_response_run_concurrently(server: FakeServer) -> None:
    barrier = asyncio.Barrier(2)

    @tool
    async def meet(who: str) -> str:
        await barrier.wait()  # one call at a time would wait here until the timeout
        return who

    calls = [call_item("call_a", "meet", '{"who": "a"}'), call_item("call_b", "meet", '{"who": "b"}')]
    rounds(server, ends_in(calls), says("Met."))
    async with connect(server.url, tools=Tools([meet], timeout=2)) as conn:
        stream = conn.create_response()
        await stream.collect()
    assert [(call.output, call.error) for call in stream.tool_calls] == [("a", None), ("b", None)]


@pytest.mark.parametrize("status", ["cancelled", "incomplete", "failed"])
async def test_calls_of_a_response_that_did_not_complete_are_not_run(
    server: FakeServer, status: ResponseStatus
) -> None:
    ran = []

    def record(city: str) -> str:
        ran.append(city)
        return "ok"

    rounds(server, ends_in([WEATHER], status))
    async with connect(server.url, tools=Tools([tool(record, name="get_weather")])) as conn:
        stream = conn.create_response()
        with pytest.raises(AuralResponseError) if status == "failed" else contextlib.nullcontext():
            await stream.collect()
    await server.finished()
    assert ran == []
    assert server.of_type("conversation.item.create") == []
    assert len(server.of_type("response.create")) == 1
    assert stream.response is not None and stream.response.status == status
    assert stream.function_calls == [WEATHER]


async def test_without_tools_the_stream_ends_at_the_calls(server: FakeServer) -> None:
    rounds(server, ends_in([WEATHER, SUM]), says("Thanks."))
    async with connect(server.url) as conn:
        stream = conn.create_response()
        assert await stream.collect() == ""
        assert stream.function_calls == [WEATHER, SUM]
        assert stream.tool_calls == []
        for item in stream.function_calls:  # answered by hand
            await conn.add_function_output(item.call_id, "done")
        assert await conn.create_response().collect() == "Thanks."
    await server.finished()
    assert outputs(server) == [("call_w", "done"), ("call_s", "done")]


async def test_after_max_rounds_the_model_must_answer(server: FakeServer) -> None:
    # A server that calls all the same (not Aural: its grammar would not let the model call under "none").
    rounds(server, *[ends_in([SUM])] * 3)
    async with connect(server.url, tools=Tools([add], max_rounds=2)) as conn:
        stream = conn.create_response()
        await stream.collect()
    await server.finished()
    requests = [request["response"] for request in server.of_type("response.create")]
    assert [request.get("tool_choice") for request in requests] == [None, None, "none"]
    assert len(stream.tool_calls) == 2
    assert stream.function_calls == [SUM], "calls made past the limit are left to the caller"


async def test_the_continuation_leaves_tool_choice_to_the_session(server: FakeServer) -> None:
    rounds(server, ends_in([SUM]), says("42"))
    async with connect(server.url, tools=Tools([add])) as conn:
        await conn.create_response(tool_choice="required", max_output_tokens=50).collect()
    await server.finished()
    first, second = (request["response"] for request in server.of_type("response.create"))
    assert first["tool_choice"] == "required"
    assert "tool_choice" not in second
    assert second["max_output_tokens"] == 50


async def test_a_cancelled_stream_does_not_run_the_calls(server: FakeServer) -> None:
    # The response finishes with its calls just as the cancel arrives: nobody wants the continuation.
    response_id = {}

    def first(request: dict[str, Any]) -> list[ServerEvent]:
        response_id["id"] = f"resp_{request['event_id']}"
        return [created(request, response_id["id"]), delta("Hm", response_id["id"])]

    rounds(server, first)
    server.responders["response.cancel"] = lambda cancel: [done("completed", response_id["id"], output=[SUM])]
    async with connect(server.url, tools=Tools([add])) as conn, conn.create_response() as stream:
        assert await anext(stream) == "Hm"
    await server.finished()
    assert server.of_type("conversation.item.create") == []
    assert stream.tool_calls == [] and stream.function_calls == [SUM]


async def test_run_tools_answers_a_response_read_with_recv(server: FakeServer) -> None:
    # A response started by server-side turn detection: no stream follows it.
    server.greeting = list(calls_response({"response": {"metadata": {}}}, [SUM], "resp_vad"))
    server.responders["response.create"] = says("42 it is.")
    async with connect(server.url, tools=Tools([add])) as conn:
        while not isinstance(event := await conn.recv(), ResponseDone):
            pass
        [result] = await conn.run_tools(event.response)
        assert (result.call_id, result.output) == ("call_s", "42")
        assert await conn.create_response().collect() == "42 it is."
    await server.finished()
    assert outputs(server) == [("call_s", "42")]
