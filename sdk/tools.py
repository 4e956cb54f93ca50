"""Tool hooks: functions the model may call, run by the SDK when a response ends in function calls.

    @tool
    async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, Any]:
        '''The current weather in a city.

        Args:
            city: the city's name, in English.
        '''

    async with connect(url, tools=Tools([get_weather, book_table], timeout=10.0)) as conn:
        await conn.add_message("user", text="Is it warm in Lisbon?")
        print(await conn.create_response().collect())  # the calls are run and the response continued

A call never raises into the conversation: an unknown tool, arguments that are not JSON or do not match
the tool's schema (the function is then not called), an exception in the function and a timeout all
become an error output, `{"error": "..."}`, which the model reads like any other output. Results are sent
as they are when they are `str`, as JSON otherwise (pydantic models, dataclasses, dicts, lists...).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

import jsonschema
from pydantic import ValidationError

from aural.protocols.models import FunctionCallItem, FunctionTool
from aural.protocols.tool_schema import (
    argument_problems,
    arguments_model,
    error_output,
    result_output,
    schema_from_function,
)

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may run by default (`Tools(timeout=...)`)."""

DEFAULT_MAX_ROUNDS = 8
"""Tool rounds a `ResponseStream` follows by default before it leaves further calls unanswered."""


class ArgumentsError(ValueError):
    """A call's arguments are not a JSON object that matches the tool's parameters."""


class Tool(Generic[P, R]):
    """A function the model may call: its wire definition and how to run it from JSON arguments.

    Made by `@tool`. Calling the tool calls the function, which stays usable (and testable) as before.

    Attributes:
        fn: the function.
        definition: what the model is told: name, description, parameters' JSON Schema.
        timeout: seconds a call may run, overriding the registry's; None: the registry's.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        parameters: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.fn = fn
        self.definition = schema_from_function(fn, name=name, description=description, parameters=parameters)
        self.timeout = timeout
        self._parse = _schema_parser(parameters) if parameters is not None else _signature_parser(fn)

    @property
    def name(self) -> str:
        """The name the model calls the tool by."""
        return self.definition.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    def parse_arguments(self, arguments: str) -> dict[str, Any]:
        """The keyword arguments for the function from a call's JSON `arguments` (empty means `{}`).

        With a schema derived from type hints, values are converted to the hinted types (an `Enum`
        member, a dataclass...); with an explicit `parameters` schema they are passed as parsed JSON.

        Raises:
            ArgumentsError: not JSON, not an object, or not valid against the tool's parameters.
        """
        return self._parse(arguments or "{}")

    async def run(self, arguments: str) -> Any:
        """Call the function with parsed `arguments`: awaited if it is a coroutine function, else in a thread.

        Raises:
            ArgumentsError: as for `parse_arguments`.
            Exception: whatever the function raises.
        """
        kwargs = self.parse_arguments(arguments)
        fn: Callable[..., Any] = self.fn  # called by keyword with values checked at run time
        if inspect.iscoroutinefunction(fn):
            return await fn(**kwargs)
        return await asyncio.to_thread(fn, **kwargs)


def _signature_parser(fn: Callable[..., Any]) -> Callable[[str], dict[str, Any]]:
    model = arguments_model(fn)

    def parse(arguments: str) -> dict[str, Any]:
        try:
            return dict(model.model_validate_json(arguments))
        except ValidationError as exc:
            raise ArgumentsError(argument_problems(exc)) from exc

    return parse


def _schema_parser(parameters: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    if parameters.get("type") != "object":
        raise ValueError('a tool\'s parameters must be a JSON Schema of "type": "object"')
    try:
        validator = jsonschema.validators.validator_for(parameters)(parameters)
        validator.check_schema(parameters)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"invalid parameters schema: {exc.message}") from exc

    def parse(arguments: str) -> dict[str, Any]:
        try:
            value = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise ArgumentsError(f"arguments: Invalid JSON: {exc}") from exc
        errors = sorted(validator.iter_errors(value), key=lambda error: list(map(str, error.absolute_path)))
        if errors:
            problems = (f"{'.'.join(map(str, e.absolute_path)) or 'arguments'}: {e.message}" for e in errors)
            raise ArgumentsError("; ".join(problems))
        return dict(value)

    return parse


@overload
def tool(
    fn: Callable[P, R],
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> Tool[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], Tool[P, R]]: ...


def tool(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> Tool[P, R] | Callable[[Callable[P, R]], Tool[P, R]]:
    """Make a function a tool: `@tool`, `@tool(name=..., ...)`, or `tool(fn, name=..., ...)`.

    Args:
        fn: a function or coroutine function. Its parameters' JSON Schema comes from their type hints and
            the docstring's `Args:` section (see `aural.protocols.tool_schema`), its description from
            the docstring's text before its sections.
        name: the tool's name instead of the function's.
        description: the tool's description instead of the docstring's.
        parameters: the parameters' JSON Schema instead of the one derived from the hints; calls are then
            checked against it with `jsonschema`.
        timeout: seconds a call may run, instead of the registry's.

    Raises:
        TypeError: hints that give no schema (see `schema_from_function`).
        ValueError: an invalid name or `parameters` schema.
    """

    def make(function: Callable[P, R]) -> Tool[P, R]:
        return Tool(function, name=name, description=description, parameters=parameters, timeout=timeout)

    return make if fn is None else make(fn)


@dataclass(frozen=True)
class ToolCall:
    """One function call the model made, and the output the SDK sent back for it.

    Attributes:
        call_id: the call's id, which the output names.
        name: the tool the model called.
        arguments: the arguments, as the model wrote them (JSON).
        output: what was sent back: the result, or `{"error": ...}` when the call failed.
        error: why the call failed (unknown tool, bad arguments, exception, timeout); None if it did not.
    """

    call_id: str
    name: str
    arguments: str
    output: str
    error: str | None = None


class Tools:
    """A registry of tools, handed to `connect(tools=...)`: the SDK then tells the server about them and
    answers the model's calls.

    Args:
        tools: `Tool`s, or plain functions (made tools as `@tool` would).
        timeout: seconds one call may run before it fails with a timeout error output; None: no limit.
            A function that runs in a thread cannot be stopped: after a timeout it runs on, unheard.
        max_rounds: how many rounds of calls one `ResponseStream` answers before it stops and leaves
            the next calls to its caller (a model calling tools forever would otherwise never end).

    Raises:
        ValueError: two tools with one name.
    """

    def __init__(
        self,
        tools: Iterable[Tool[..., Any] | Callable[..., Any]] = (),
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_rounds: int = DEFAULT_MAX_ROUNDS,
    ) -> None:
        self.timeout = timeout
        self.max_rounds = max_rounds
        self._tools: dict[str, Tool[..., Any]] = {}
        for item in tools:
            self.add(item)

    def add(self, fn: Tool[P, R] | Callable[P, R]) -> Tool[P, R]:
        """Register a tool (a plain function is made one first) and return it.

        Tools added after `connect` reach the server with the next `update_session(tools=conn.tools.definitions)`.

        Raises:
            ValueError: a tool of that name is already registered.
        """
        made = fn if isinstance(fn, Tool) else tool(fn)
        if made.name in self._tools:
            raise ValueError(f"a tool named {made.name!r} is already registered")
        self._tools[made.name] = made
        return made

    @property
    def definitions(self) -> list[FunctionTool]:
        """The tools' definitions, for `session.update` or `response.create`."""
        return [item.definition for item in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool[..., Any]]:
        return iter(self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __getitem__(self, name: str) -> Tool[..., Any]:
        return self._tools[name]

    async def call(self, item: FunctionCallItem) -> ToolCall:
        """Run one call and return it with its output; every failure becomes an error output."""
        found = self._tools.get(item.name)
        if found is None:
            known = ", ".join(self._tools) or "none"
            return _failed(item, f"unknown tool {item.name!r} (the tools are: {known})")
        timeout = found.timeout if found.timeout is not None else self.timeout
        try:
            result = await asyncio.wait_for(found.run(item.arguments), timeout)
        except ArgumentsError as exc:
            return _failed(item, f"invalid arguments for {item.name}: {exc}")
        except TimeoutError:
            return _failed(item, f"{item.name} did not finish within {timeout:g} s")
        except Exception as exc:
            logger.warning("tool %s raised", item.name, exc_info=True)
            return _failed(item, f"{item.name} raised {type(exc).__name__}: {exc}")
        try:
            output = result_output(result)
        except ValueError as exc:
            return _failed(item, f"the result of {item.name} cannot be written as JSON: {exc}")
        return ToolCall(item.call_id, item.name, item.arguments, output)

    async def call_all(self, items: Sequence[FunctionCallItem]) -> list[ToolCall]:
        """Run calls concurrently; return them in the order given."""
        return list(await asyncio.gather(*(self.call(item) for item in items)))


def _failed(item: FunctionCallItem, error: str) -> ToolCall:
    return ToolCall(item.call_id, item.name, item.arguments, error_output(error), error)
