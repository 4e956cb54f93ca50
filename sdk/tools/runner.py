"""`Tools`: a registry of tools that runs the model's calls, for the SDK's connections and the server alike.

One dispatch serves both: `Tools.call` answers a `function_call` item for a `Connection`, and `Tools.run`
(name and JSON arguments in, output out) is what the runtime calls for its server-side tools. A call never
raises into the conversation: an unknown tool, arguments that are not JSON or do not match the tool's
schema (the function is then not called), an exception in the function, a timeout and a result that cannot
be written as JSON all become an error output, `{"error": "..."}`, which the model reads like any other
output. Results are sent as they are when they are `str`, as JSON otherwise (pydantic models,
dataclasses, dicts, lists...).

The round policy is one for the SDK and the server: after `max_rounds` rounds of calls answered and
continued automatically in a row, the next continuation gets `tool_choice: "none"`, so that the model
answers instead of calling tools forever.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import pydantic_core

from aural.protocols.models import FunctionCallItem, FunctionTool

from .tool import ArgumentsError, Tool, tool

log = logging.getLogger("aural.sdk.tools")

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may run by default (`Tools(timeout=...)`, `aural serve --tool-timeout`)."""

DEFAULT_MAX_ROUNDS = 8
"""Rounds of calls answered and continued automatically in a row before the continuation gets
`tool_choice: "none"` (`Tools(max_rounds=...)`). The runtime's server tools follow the same rule."""


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
    """A registry of tools: hand it to `connect(tools=...)` (the SDK then tells the server about them and
    answers the model's calls), or load it for the server (`aural serve --tools`, see `load_tools`).

    Args:
        tools: `Tool`s, or plain functions (made tools as `@tool` would).
        timeout: seconds one call may run before it fails with a timeout error output; None: no limit.
            A function that runs in a thread cannot be stopped: after a timeout it runs on, unheard.
        max_rounds: rounds of calls answered and continued automatically in a row; the continuation after
            the last of them gets `tool_choice: "none"`, and calls the model still makes are left to the
            caller (a model calling tools forever would otherwise never end).

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

        Tools added after `connect` reach the server with the next `update_session(tools=conn.tools)`.

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

    async def run(self, name: str, arguments: str, *, logger: Any = None) -> str:
        """Run one call and return its output; every failure becomes an error output (this never raises).

        Args:
            name: the tool the model called.
            arguments: the call's arguments, as the model wrote them (JSON; empty means `{}`).
            logger: where failures are logged: a `logging.Logger` or a structlog logger (the runtime passes
                its connection's, bound to the session); `aural.sdk.tools` by default.
        """
        output, _ = await self._dispatch(name, arguments, logger or log)
        return output

    async def call(self, item: FunctionCallItem) -> ToolCall:
        """Run one call and return it with its output; every failure becomes an error output."""
        output, error = await self._dispatch(item.name, item.arguments, log)
        return ToolCall(item.call_id, item.name, item.arguments, output, error)

    async def call_all(self, items: Sequence[FunctionCallItem]) -> list[ToolCall]:
        """Run calls concurrently; return them in the order given."""
        return list(await asyncio.gather(*(self.call(item) for item in items)))

    async def _dispatch(self, name: str, arguments: str, logger: Any) -> tuple[str, str | None]:
        """The output of one call, and why it failed (None when it did not)."""
        found = self._tools.get(name)
        if found is None:
            return _failed(f"unknown tool {name!r} (the tools are: {', '.join(self._tools) or 'none'})")
        timeout = found.timeout if found.timeout is not None else self.timeout
        try:
            result = await asyncio.wait_for(found.run(arguments), timeout)
        except ArgumentsError as exc:
            logger.info("tool %s called with invalid arguments: %s", name, exc)
            return _failed(f"invalid arguments for {name}: {exc}")
        except TimeoutError:
            logger.warning("tool %s did not finish within %g s", name, timeout)
            return _failed(f"{name} did not finish within {timeout:g} s")
        except Exception as exc:
            logger.warning("tool %s raised", name, exc_info=True)
            return _failed(f"{name} raised {type(exc).__name__}: {exc}")
        if isinstance(result, str):
            return result, None
        try:
            return pydantic_core.to_json(result).decode(), None
        except pydantic_core.PydanticSerializationError as exc:
            logger.warning("the result of tool %s is not JSON: %s", name, exc)
            return _failed(f"the result of {name} cannot be written as JSON: {exc}")


def _failed(error: str) -> tuple[str, str]:
    """A failed call's output, as the model reads it (`{"error": error}`), and the error."""
    return json.dumps({"error": error}), error
