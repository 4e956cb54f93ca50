"""`load_tools`: `package.module:attr` specs to tools, every bad spec refused with its reason."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aural.sdk.tools import DEFAULT_TIMEOUT, ToolLoadError, load_tools


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    """An importable module `name` holding `source`."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_specs_load_functions_lists_and_dicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, monkeypatch, "dict_tools", """
        def add(a: int, b: int) -> int:
            '''The sum.'''
            return a + b

        TOOLS = {"plus": add}
    """)  # fmt: skip
    tools = load_tools(["examples.server_tools:TOOLS", f"{name}:TOOLS", f"{name}:add"])
    assert [tool.name for tool in tools.definitions] == ["get_time", "lookup_order", "plus", "add"]
    [plus] = [tool for tool in tools.definitions if tool.name == "plus"]
    assert plus.description == "The sum." and plus.parameters is not None
    assert plus.parameters["required"] == ["a", "b"]
    assert "plus" in tools and len(tools) == 4
    assert tools.timeout == DEFAULT_TIMEOUT and load_tools([f"{name}:add"], timeout=None).timeout is None


def test_decorated_tools_keep_their_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, monkeypatch, "decorated_tools", """
        from aural.sdk import tool

        @tool(name="sum", timeout=2.0)
        def add(a: int, b: int) -> int:
            '''The sum.'''
            return a + b

        LISTED = [add]
        RENAMED = {"plus": add}
    """)  # fmt: skip
    for spec in (f"{name}:add", f"{name}:LISTED"):
        [made] = load_tools([spec])
        assert made.name == "sum" and made.timeout == 2.0
    with pytest.raises(ToolLoadError, match="the tool 'sum' is listed as 'plus'"):
        load_tools([f"{name}:RENAMED"])


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("examples.server_tools", "^'examples.server_tools': expected 'package.module:attr'"),
        ("no_such_module_here:x", "^no_such_module_here:x: cannot import 'no_such_module_here'"),
        ("examples.server_tools:NOPE", "has no attribute 'NOPE'"),
        ("examples.server_tools:ORDERS", "expected a function"),
        ("json:dumps", "has no type hint"),
        ("examples.server_tools:get_time", "^examples.server_tools:get_time: a tool named 'get_time' is alr"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(spec: str, problem: str) -> None:
    with pytest.raises(ToolLoadError, match=problem):
        load_tools(["examples.server_tools:TOOLS", spec])


def test_a_schema_that_is_not_json_schema_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = _module(tmp_path, monkeypatch, "schema_tools", """
        from typing import Annotated
        from pydantic import Field

        def count(n: Annotated[int, Field(json_schema_extra={"minimum": "one"})]) -> int:
            return n
    """)  # fmt: skip
    with pytest.raises(ToolLoadError, match=r"^schema_tools:count: 'count' cannot be a tool: invalid parameters"):
        load_tools([f"{name}:count"])
