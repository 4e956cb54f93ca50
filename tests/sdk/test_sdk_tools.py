"""`@tool`, `Tool` and `Tools`: definitions, dispatch to async and sync functions, failures as error outputs,
for the SDK (`Tools.call`) and for the runtime's server tools (`Tools.run`) alike."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from aural.protocols.models import FunctionCallItem
from aural.sdk import ArgumentsError, Tool, ToolCall, Tools, tool
from aural.sdk.tools import schema_from_function
from examples.server_tools import get_time, lookup_order


@tool
async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, Any]:
    """The current weather in a city.

    Args:
        city: the city's name.
    """
    return {"city": city, "temperature": 21, "unit": unit}


def call(name: str, arguments: str, call_id: str = "call_1") -> FunctionCallItem:
    return FunctionCallItem(call_id=call_id, name=name, arguments=arguments)


def error_of(result: ToolCall) -> str:
    """The message of an error output, checking that the output and `error` agree."""
    assert result.error is not None
    assert json.loads(result.output) == {"error": result.error}
    return result.error


def test_the_decorator_keeps_the_function_and_describes_it() -> None:
    def add(a: int, b: int = 1) -> int:
        """Adds two numbers."""
        return a + b

    made = tool(add)
    assert isinstance(made, Tool)
    assert made(2, b=3) == 5
    assert made.name == "add"
    assert made.definition == schema_from_function(add)
    assert get_weather.definition.description == "The current weather in a city."


def test_the_decorator_with_explicit_settings() -> None:
    parameters = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}

    @tool(name="search", description="Searches.", parameters=parameters, timeout=2.5)
    def lookup(**query: Any) -> str:
        return str(query)

    assert (lookup.name, lookup.definition.description, lookup.timeout) == ("search", "Searches.", 2.5)
    assert lookup.definition.parameters == parameters
    assert lookup.parse_arguments('{"q": "cats"}') == {"q": "cats"}
    with pytest.raises(ArgumentsError, match="'q' is a required property"):
        lookup.parse_arguments("{}")
    with pytest.raises(ArgumentsError, match="q: 3 is not of type 'string'"):
        lookup.parse_arguments('{"q": 3}')
    with pytest.raises(ArgumentsError, match="Invalid JSON"):
        lookup.parse_arguments("{q")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [({"type": "array"}, '"type": "object"'), ({"type": "object", "properties": 3}, "invalid parameters schema")],
)
def test_explicit_schemas_are_checked_when_decorating(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tool(name="nothing", parameters=parameters)(lambda: None)


def test_the_registry() -> None:
    def ping() -> str:
        return "pong"

    tools = Tools([get_weather, ping])
    assert len(tools) == 2
    assert "ping" in tools and "pong" not in tools
    assert isinstance(tools["ping"], Tool)
    assert [item.name for item in tools] == ["get_weather", "ping"]
    assert tools.definitions == [get_weather.definition, schema_from_function(ping)]
    with pytest.raises(ValueError, match="already registered"):
        tools.add(ping)


async def test_async_and_sync_functions_are_called() -> None:
    threads: list[int] = []

    def add(a: int, b: int) -> int:
        threads.append(threading.get_ident())
        return a + b

    tools = Tools([get_weather, add])
    weather = await tools.call(call("get_weather", '{"city": "Lisbon"}'))
    assert weather == ToolCall("call_1", "get_weather", '{"city": "Lisbon"}', weather.output)
    assert json.loads(weather.output) == {"city": "Lisbon", "temperature": 21, "unit": "c"}
    assert (await tools.call(call("add", '{"a": 2, "b": 40}'))).output == "42"
    assert threads != [threading.get_ident()]  # a sync function runs in a thread, not on the loop


class Colour(Enum):
    RED = "red"


@dataclass
class Point:
    x: int
    y: int


class Reading(BaseModel):
    value: float
    unit: str


@pytest.mark.parametrize(
    ("result", "output"),
    [
        ("plain text, sent as is", "plain text, sent as is"),
        ('"quoted"', '"quoted"'),
        ({"a": [1, 2.5, None]}, '{"a":[1,2.5,null]}'),
        (Point(1, 2), '{"x":1,"y":2}'),
        (Reading(value=1.5, unit="bar"), '{"value":1.5,"unit":"bar"}'),
        (Colour.RED, '"red"'),
        (None, "null"),
    ],
)
async def test_results_are_sent_as_text_or_json(result: object, output: str) -> None:
    def give() -> object:
        return result

    answer = await Tools([give]).call(call("give", "{}"))
    assert (answer.output, answer.error) == (output, None)


async def test_a_result_that_is_not_json_is_an_error() -> None:
    def give() -> object:
        return object()

    assert "cannot be written as JSON" in error_of(await Tools([give]).call(call("give", "")))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("{city", "invalid arguments for book: arguments: Invalid JSON"),
        ("[1]", "invalid arguments for book: arguments: Input should be an object"),
        ('{"seats": 2}', "city: Field required"),
        ('{"city": "Porto", "seats": "2"}', "seats: Input should be a valid integer"),
        ('{"city": "Porto", "seats": 2, "when": "now"}', "when: Extra inputs are not permitted"),
    ],
)
async def test_bad_arguments_are_an_error_and_the_function_is_not_called(arguments: str, message: str) -> None:
    called = []

    def book(city: str, seats: int = 2) -> str:
        called.append(city)
        return "booked"

    assert message in error_of(await Tools([book]).call(call("book", arguments)))
    assert called == []


async def test_an_unknown_tool_is_an_error() -> None:
    error = error_of(await Tools([get_weather]).call(call("get_wether", "{}")))
    assert error == "unknown tool 'get_wether' (the tools are: get_weather)"


@pytest.mark.parametrize("is_async", [False, True])
async def test_an_exception_is_an_error_the_model_sees(is_async: bool, caplog: pytest.LogCaptureFixture) -> None:
    def fail_sync(city: str) -> str:
        raise LookupError(f"no such city: {city}")

    async def fail_async(city: str) -> str:
        raise LookupError(f"no such city: {city}")

    tools = Tools([tool(fail_async if is_async else fail_sync, name="fail")])
    with caplog.at_level(logging.WARNING, logger="aural.sdk.tools"):
        result = await tools.call(call("fail", '{"city": "Atlantis"}'))
    assert error_of(result) == "fail raised LookupError: no such city: Atlantis"
    [record] = caplog.records
    assert record.exc_info is not None and record.exc_info[0] is LookupError


async def test_an_async_tool_past_its_timeout_is_cancelled_and_an_error() -> None:
    cancelled = asyncio.Event()

    async def hang() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    result = await Tools([hang], timeout=0.01).call(call("hang", "{}"))
    assert error_of(result) == "hang did not finish within 0.01 s"
    assert cancelled.is_set()


async def test_a_sync_tool_past_its_timeout_is_an_error() -> None:
    release = threading.Event()

    def hang() -> str:
        release.wait()
        return "never"

    try:  # The tool's own timeout wins over the registry's.
        result = await Tools([tool(timeout=0.01)(hang)], timeout=None).call(call("hang", "{}"))
    finally:
        release.set()  # or closing the loop would wait for the thread
    assert error_of(result) == "hang did not finish within 0.01 s"


async def test_calls_run_concurrently() -> None:
    # Each call waits for the others at a barrier: run one after another, they would all time out.
    async_barrier = asyncio.Barrier(2)
    thread_barrier = threading.Barrier(2, timeout=2)

    async def meet_async(who: str) -> str:
        await async_barrier.wait()
        return who

    def meet_sync(who: str) -> str:
        thread_barrier.wait()
        return who

    tools = Tools([meet_async, meet_sync], timeout=2)
    items = [
        call(name, json.dumps({"who": f"{name}{index}"}), f"call_{name}{index}")
        for index in range(2)
        for name in ("meet_async", "meet_sync")
    ]
    results = await tools.call_all(items)
    assert [result.call_id for result in results] == [item.call_id for item in items]
    assert [(result.output, result.error) for result in results] == [
        (json.loads(item.arguments)["who"], None) for item in items
    ]


# --- Tools.run: what the runtime calls for its server tools ------------------------------------------


async def test_run_gives_results_and_failures_as_outputs() -> None:
    def boom(n: int) -> str:
        raise ValueError(f"bad {n}")

    tools = Tools([get_time, lookup_order, boom])
    assert json.loads(await tools.run("lookup_order", '{"order_id": 1001}')) == {
        "order_id": 1001, "status": "shipped", "items": 2}  # fmt: skip
    assert len(await tools.run("get_time", "")) == len("HH:MM"), "no arguments: the defaults"
    failures = {
        "lookup_order": ('{"order_id": 7}', "lookup_order raised KeyError: 'no order 7'"),
        "boom": ('{"n": 3}', "boom raised ValueError: bad 3"),
        "nope": ("{}", "unknown tool 'nope' (the tools are: get_time, lookup_order, boom)"),
    }
    for name, (arguments, error) in failures.items():
        assert json.loads(await tools.run(name, arguments)) == {"error": error}
    invalid = json.loads(await tools.run("lookup_order", '{"order_id": "7", "x": 1}'))["error"]
    assert invalid.startswith("invalid arguments for lookup_order: order_id: ") and "x: Extra inputs" in invalid


async def test_run_times_out_and_runs_sync_functions_in_a_thread() -> None:
    release = threading.Event()
    threads: list[int] = []

    def blocking(n: int) -> int:
        threads.append(threading.get_ident())
        release.wait()
        return n

    async def sleepy(n: int) -> int:
        await asyncio.sleep(3600)
        return n

    tools = Tools([blocking, sleepy], timeout=0.01)
    assert json.loads(await tools.run("sleepy", '{"n": 1}')) == {"error": "sleepy did not finish within 0.01 s"}
    assert json.loads(await tools.run("blocking", '{"n": 1}')) == {"error": "blocking did not finish within 0.01 s"}
    release.set()
    assert threads and threads[0] != threading.get_ident(), "the event loop's thread was never blocked"
    assert await Tools([blocking], timeout=None).run("blocking", '{"n": 2}') == "2"


async def test_run_logs_failures_to_the_logger_given() -> None:
    logged: list[tuple[str, str, tuple[object, ...], dict[str, object]]] = []

    class Recorder:  # a structlog logger's shape: the runtime passes one bound to the conversation
        def info(self, event: str, *args: object, **fields: object) -> None:
            logged.append(("info", event, args, fields))

        def warning(self, event: str, *args: object, **fields: object) -> None:
            logged.append(("warning", event, args, fields))

    def boom() -> str:
        raise ValueError("bad")

    tools = Tools([boom, lookup_order])
    await tools.run("boom", "{}", logger=Recorder())
    await tools.run("lookup_order", '{"order_id": "x"}', logger=Recorder())
    assert [(level, event % args, fields) for level, event, args, fields in logged] == [
        ("warning", "tool boom raised", {"exc_info": True}),
        ("info", "tool lookup_order called with invalid arguments: order_id: Input should be a valid integer",
         {}),
    ]  # fmt: skip
