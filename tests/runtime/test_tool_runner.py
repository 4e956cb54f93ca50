"""The runtime's side of server tools: any object of the `ToolRunner` shape, checked before it is served."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from aural.protocols.models import FunctionTool
from aural.runtime.engine.base import Engine, ModelCapabilities
from aural.runtime.engine.tool_grammar import schema_problem
from aural.runtime.server.app import SERVER_TOOLS, create_app
from aural.runtime.tools import NO_TOOLS, ToolRunner, check_server_tools


class Echo:
    """A runner that is not the SDK's: the runtime relies on the shape alone."""

    max_rounds = 3

    def __init__(self, *definitions: FunctionTool) -> None:
        self.definitions = list(definitions)

    async def run(self, name: str, arguments: str, *, logger: Any = None) -> str:
        return arguments


def _tool(name: str, **schema: Any) -> FunctionTool:
    return FunctionTool(name=name, parameters={"type": "object", "properties": {"x": schema}} if schema else None)


class _Engine:
    model_name = "stub"
    max_context = 1024
    capabilities = ModelCapabilities(30 * 16000, 1024, schema_problem)


def test_a_runner_of_the_right_shape_is_served() -> None:
    runner: ToolRunner = Echo(_tool("echo", type="string"))
    check_server_tools(runner, schema_problem)
    app = create_app(cast(Engine, _Engine()), server_tools=runner)
    assert app[SERVER_TOOLS] is runner
    assert create_app(cast(Engine, _Engine()))[SERVER_TOOLS] is NO_TOOLS


@pytest.mark.parametrize(
    ("definitions", "problem"),
    [
        ((_tool("bad name"),), "Invalid function name 'bad name'"),
        ((_tool("twice"), _tool("twice")), "Duplicate function name 'twice'"),
        ((_tool("own", type="string", format="mine"),), "cannot be enforced while decoding: Unknown format: mine"),
    ],
)
def test_tools_the_runtime_cannot_serve_are_refused(definitions: tuple[FunctionTool, ...], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        check_server_tools(Echo(*definitions), schema_problem)
    with pytest.raises(ValueError, match=problem):
        create_app(cast(Engine, _Engine()), server_tools=Echo(*definitions))


async def test_without_tools_nothing_is_offered_and_a_call_is_an_error() -> None:
    assert NO_TOOLS.definitions == []
    output = json.loads(await NO_TOOLS.run("anything", "{}"))
    assert output == {"error": "unknown tool 'anything' (the server has no tools)"}
