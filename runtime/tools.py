"""Server-side tools: Python functions the runtime offers to the model and runs itself, with no client round trip.

    aural serve --tools examples.server_tools:TOOLS --tool-timeout 10

A spec `package.module:attr` names a function, a list or tuple of functions, or a dict of names to functions.
Each function's definition (name, description, parameters' JSON Schema) comes from its signature and
docstring (`aural.protocols.tool_schema`), as for the SDK's `@tool`; the same parameters model validates a
call's arguments before the function runs. Coroutine functions are awaited, plain ones run in a thread.

A call never raises into the conversation: an unknown tool, arguments that do not match, an exception in the
function and a timeout all become an error output, `{"error": "..."}`, which the model reads like any other
output (and which is logged). Results are sent as they are when they are `str`, as JSON otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core
import structlog
from pydantic import BaseModel, ValidationError

from aural.protocols.errors import ProtocolError
from aural.protocols.models import FunctionTool
from aural.protocols.tool_schema import (
    argument_problems,
    arguments_model,
    error_output,
    result_output,
    schema_from_function,
)

from .session.tool_calls import check_tools

DEFAULT_TIMEOUT = 30.0
"""Seconds a server tool may run by default (`aural serve --tool-timeout`)."""

log = structlog.get_logger(__name__)


class ToolLoadError(ValueError):
    """A `--tools` spec that does not give usable tools: a missing module or attribute, something that is
    not a function, a signature with no JSON Schema, a schema the decoder cannot enforce, or a name taken."""


@dataclass(frozen=True)
class ServerTool:
    """One function the runtime runs: its wire definition and the model that validates its arguments."""

    fn: Callable[..., Any]
    definition: FunctionTool
    arguments: type[BaseModel]

    @classmethod
    def of(cls, fn: object, name: str | None = None) -> ServerTool:
        """The tool for `fn`, called `name` (its `__name__` by default).

        Raises:
            ToolLoadError: `fn` is not callable, or its signature gives no schema.
        """
        if not callable(fn):
            raise ToolLoadError(f"{fn!r} is not callable")
        try:
            return cls(fn, schema_from_function(fn, name=name), arguments_model(fn))
        except (TypeError, ValueError, AttributeError, pydantic_core.SchemaError) as exc:
            raise ToolLoadError(f"{getattr(fn, '__qualname__', fn)!r} cannot be a tool: {exc}") from exc


class ServerTools:
    """The functions the runtime offers to every session's model and runs itself.

    Args:
        functions: functions (named by their `__name__`), or a mapping of names to functions.
        timeout: seconds one call may run before it fails with a timeout error output; None: no limit.
            A function that runs in a thread cannot be stopped: after a timeout it runs on, unheard.

    Raises:
        ToolLoadError: a function that cannot be a tool, or two tools with one name.
    """

    def __init__(
        self,
        functions: Iterable[Callable[..., Any]] | Mapping[str, Callable[..., Any]] = (),
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.timeout = timeout
        named = functions.items() if isinstance(functions, Mapping) else ((None, fn) for fn in functions)
        tools = [ServerTool.of(fn, name) for name, fn in named]
        try:
            check_tools([tool.definition for tool in tools], None, "tools")
        except ProtocolError as exc:
            raise ToolLoadError(exc.message) from None
        self._tools = {tool.definition.name: tool for tool in tools}

    @classmethod
    def load(cls, specs: Sequence[str], *, timeout: float | None = DEFAULT_TIMEOUT) -> ServerTools:
        """The tools named by `package.module:attr` specs, in order.

        Raises:
            ToolLoadError: a malformed spec, a module or attribute that cannot be found, an attribute
                that is not a function, a list or tuple of functions or a dict of them, or as for `ServerTools`.
        """
        functions: dict[str, Callable[..., Any]] = {}
        for spec in specs:
            for name, fn in _functions(spec, _resolve(spec)):
                if name in functions:
                    raise ToolLoadError(f"--tools {spec}: a tool named {name!r} is already loaded")
                functions[name] = fn
        return cls(functions, timeout=timeout)

    @property
    def definitions(self) -> list[FunctionTool]:
        """What the model is told about the tools."""
        return [tool.definition for tool in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    async def run(self, name: str, arguments: str, *, logger: Any = None) -> str:
        """Run one call and return its output; every failure becomes an error output.

        Args:
            name: the tool the model called.
            arguments: the call's arguments, as the model wrote them (JSON; empty means `{}`).
            logger: a structlog logger for failures (the connection's, bound to its session); this module's
                by default.
        """
        logger = logger or log
        tool = self._tools.get(name)
        if tool is None:
            return error_output(f"unknown tool {name!r} (the tools are: {', '.join(self._tools) or 'none'})")
        try:
            kwargs = dict(tool.arguments.model_validate_json(arguments or "{}"))
        except ValidationError as exc:
            problems = argument_problems(exc)
            logger.info("server tool called with invalid arguments", tool=name, problems=problems)
            return error_output(f"invalid arguments for {name}: {problems}")
        try:
            result = await asyncio.wait_for(_call(tool.fn, kwargs), self.timeout)
        except TimeoutError:
            logger.warning("server tool timed out", tool=name, timeout=self.timeout)
            return error_output(f"{name} did not finish within {self.timeout:g} s")
        except Exception as exc:
            logger.warning("server tool raised", tool=name, exc_info=True)
            return error_output(f"{name} raised {type(exc).__name__}: {exc}")
        try:
            return result_output(result)
        except ValueError as exc:
            logger.warning("server tool result is not JSON", tool=name, exc_info=True)
            return error_output(f"the result of {name} cannot be written as JSON: {exc}")


async def _call(fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(**kwargs)
    return await asyncio.to_thread(fn, **kwargs)


def _resolve(spec: str) -> object:
    """The object a `package.module:attr` spec names (`attr` may be dotted)."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ToolLoadError(f"--tools {spec!r}: expected 'package.module:attr'")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolLoadError(f"--tools {spec}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ToolLoadError(f"--tools {spec}: {module_name!r} has no attribute {attr!r}") from None
    return found


def _functions(spec: str, found: object) -> list[tuple[str, Callable[..., Any]]]:
    """The named functions of a spec's object: one function, a list or tuple of them, or a dict name → function."""
    if isinstance(found, Mapping):
        pairs = list(found.items())
    elif isinstance(found, list | tuple):
        pairs = [(getattr(fn, "__name__", None), fn) for fn in found]
    else:
        pairs = [(getattr(found, "__name__", None), found)]
    for name, fn in pairs:
        if not isinstance(name, str) or not callable(fn):
            expected = "a function, a list or tuple of functions, or a dict of names to functions"
            raise ToolLoadError(f"--tools {spec}: expected {expected}; got {fn!r}")
    return pairs
