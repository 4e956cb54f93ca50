"""Server-side tools: loading `--tools` specs and running calls (every failure an error output)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import textwrap
import threading
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field

from aural.runtime.tools import DEFAULT_TIMEOUT, ServerTools, ToolLoadError
from tests.support.tools import get_time, lookup_order


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
    tools = ServerTools.load(["tests.support.tools:TOOLS", f"{name}:TOOLS", f"{name}:add"])
    assert [tool.name for tool in tools.definitions] == ["get_time", "lookup_order", "plus", "add"]
    [plus] = [tool for tool in tools.definitions if tool.name == "plus"]
    assert plus.description == "The sum." and plus.parameters is not None
    assert plus.parameters["required"] == ["a", "b"]
    assert "plus" in tools and len(tools) == 4


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("tests.support.tools", "expected 'package.module:attr'"),
        ("no_such_module_here:x", "cannot import 'no_such_module_here'"),
        ("tests.support.tools:NOPE", "has no attribute 'NOPE'"),
        ("tests.support.tools:ORDERS", "expected a function"),
        ("json:dumps", "has no type hint"),
        ("tests.support.tools:get_time", "already loaded"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(spec: str, problem: str) -> None:
    with pytest.raises(ToolLoadError, match=problem):
        ServerTools.load(["tests.support.tools:TOOLS", spec])


def _lookaround(code: Annotated[str, Field(pattern=r"(?=a)b")]) -> str:
    return code


def _unknown_format(code: Annotated[str, Field(json_schema_extra={"format": "mine"})]) -> str:
    return code


@pytest.mark.parametrize(
    ("fn", "problem"),
    [(_lookaround, "look-around"), (_unknown_format, "cannot be enforced while decoding: Unknown format: mine")],
)
def test_a_schema_that_cannot_be_validated_or_enforced_is_refused(fn: Any, problem: str) -> None:
    with pytest.raises(ToolLoadError, match=problem):
        ServerTools([fn])


@pytest.mark.model
def test_serve_refuses_a_bad_spec_before_it_loads_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from aural.runtime import serve as serve_module  # it imports the transformers engine

    monkeypatch.setattr(serve_module, "configure_logging", lambda level: None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    parser = argparse.ArgumentParser()
    serve_module.add_arguments(parser)
    args = parser.parse_args(["--model", "/no/such/checkpoint", "--tools", "tests.support.tools:NOPE"])
    assert args.tool_timeout == DEFAULT_TIMEOUT
    with pytest.raises(SystemExit, match=r"^aural serve: --tools tests.support.tools:NOPE: .* no attribute 'NOPE'"):
        serve_module.serve(args)


async def test_results_and_failures_become_outputs() -> None:
    def boom(n: int) -> str:
        raise ValueError(f"bad {n}")

    tools = ServerTools([get_time, lookup_order, boom])
    assert json.loads(await tools.run("lookup_order", '{"order_id": 1001}')) == {
        "order_id": 1001, "status": "shipped", "items": 2}  # fmt: skip
    assert len(await tools.run("get_time", "")) == len("HH:MM"), "no arguments: the defaults"
    failures = {
        "lookup_order": ('{"order_id": 7}', "lookup_order raised KeyError: 7"),
        "boom": ('{"n": 3}', "boom raised ValueError: bad 3"),
        "nope": ("{}", "unknown tool 'nope' (the tools are: get_time, lookup_order, boom)"),
    }
    for name, (arguments, error) in failures.items():
        assert json.loads(await tools.run(name, arguments)) == {"error": error}
    invalid = json.loads(await tools.run("lookup_order", '{"order_id": "7", "x": 1}'))["error"]
    assert invalid.startswith("invalid arguments for lookup_order: order_id: ") and "x: Extra inputs" in invalid


async def test_a_slow_call_times_out_and_sync_functions_run_in_a_thread() -> None:
    release = threading.Event()
    threads: list[int] = []

    def blocking(n: int) -> int:
        threads.append(threading.get_ident())
        release.wait()
        return n

    async def sleepy(n: int) -> int:
        await asyncio.sleep(3600)
        return n

    tools = ServerTools([blocking, sleepy], timeout=0.01)
    assert json.loads(await tools.run("sleepy", '{"n": 1}')) == {"error": "sleepy did not finish within 0.01 s"}
    assert json.loads(await tools.run("blocking", '{"n": 1}')) == {"error": "blocking did not finish within 0.01 s"}
    release.set()
    assert threads and threads[0] != threading.get_ident(), "the event loop's thread was never blocked"
    assert await ServerTools([blocking], timeout=None).run("blocking", '{"n": 2}') == "2"
