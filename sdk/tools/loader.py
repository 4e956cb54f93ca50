"""Tools named by `package.module:attr` specs, as `aural serve --tools` takes them.

    load_tools(["examples.server_tools:TOOLS"], timeout=10.0)

A spec names a function (or a `@tool`), a list or tuple of them, or a dict of names to them. Each becomes a
`Tool` as `@tool` makes it: its schema from its type hints and docstring, checked with `jsonschema`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic_core

from .runner import DEFAULT_TIMEOUT, Tools
from .tool import Tool, tool


class ToolLoadError(ValueError):
    """A spec that does not give usable tools: a missing module or attribute, something that is not a
    function, a signature with no JSON Schema, an invalid schema, or a name already taken.

    The message starts with the spec.
    """


def load_tools(specs: Sequence[str], *, timeout: float | None = DEFAULT_TIMEOUT) -> Tools:
    """The tools named by `package.module:attr` specs, in order, in one registry.

    Args:
        specs: `package.module:attr` (`attr` may be dotted), imported as `import` would find the module.
        timeout: seconds one call may run (see `Tools`).

    Raises:
        ToolLoadError: a malformed spec, a module or attribute that cannot be found, an attribute that is
            not a function, a list or tuple of functions or a dict of them, a function that cannot be a
            tool, or a name already loaded.
    """
    tools = Tools(timeout=timeout)
    for spec in specs:
        for name, fn in _named(spec, _resolve(spec)):
            made = _tool(spec, name, fn)
            if made.name in tools:
                raise ToolLoadError(f"{spec}: a tool named {made.name!r} is already loaded")
            tools.add(made)
    return tools


def _resolve(spec: str) -> object:
    """The object a `package.module:attr` spec names."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ToolLoadError(f"{spec!r}: expected 'package.module:attr'")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ToolLoadError(f"{spec}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ToolLoadError(f"{spec}: {module_name!r} has no attribute {attr!r}") from None
    return found


def _named(spec: str, found: object) -> list[tuple[str, Any]]:
    """The named functions of a spec's object: one, a list or tuple of them, or a dict name → function."""
    if isinstance(found, Mapping):
        pairs = list(found.items())
    elif isinstance(found, list | tuple):
        pairs = [(_name_of(fn), fn) for fn in found]
    else:
        pairs = [(_name_of(found), found)]
    for name, fn in pairs:
        if not isinstance(name, str) or not callable(fn):
            expected = "a function, a list or tuple of functions, or a dict of names to functions"
            raise ToolLoadError(f"{spec}: expected {expected}; got {fn!r}")
    return pairs


def _name_of(fn: object) -> str | None:
    return fn.name if isinstance(fn, Tool) else getattr(fn, "__name__", None)


def _tool(spec: str, name: str, fn: Any) -> Tool[..., Any]:
    """`fn` as a tool called `name`: a `Tool` as it is, a function made one."""
    if isinstance(fn, Tool):
        if fn.name != name:
            raise ToolLoadError(f"{spec}: the tool {fn.name!r} is listed as {name!r}: use its own name")
        return fn
    try:
        return tool(fn, name=name)
    except (TypeError, ValueError, AttributeError, pydantic_core.SchemaError) as exc:
        raise ToolLoadError(f"{spec}: {getattr(fn, '__qualname__', fn)!r} cannot be a tool: {exc}") from exc
