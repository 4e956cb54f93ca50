"""`@tool` and `Tool`: a Python function the model may call, with its wire definition and argument parsing."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from pydantic import ValidationError

from aural.protocols.models import FunctionTool

from .schema import arguments_model, parameters_validator, schema_from_function

P = ParamSpec("P")
R = TypeVar("R")


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
        self.definition: FunctionTool = schema_from_function(
            fn, name=name, description=description, parameters=parameters
        )
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
            problems = (f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors())
            raise ArgumentsError("; ".join(problems)) from exc

    return parse


def _schema_parser(parameters: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    validator = parameters_validator(parameters)

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
            the docstring's `Args:` section (see `aural.sdk.tools.schema`), its description from the
            docstring's text before its sections.
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
