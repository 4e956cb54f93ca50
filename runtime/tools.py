"""Server-side tools as the runtime sees them: a `ToolRunner`, whatever implements it.

The runtime does not make tools: it is handed a runner (`create_app(server_tools=...)`), offers its
definitions to every conversation's model and runs their calls through it. `aural serve --tools` hands it
the SDK's `aural.sdk.tools.Tools` (the runtime never imports the SDK: the command line composes the two).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Protocol

from aural.protocols.errors import ProtocolError
from aural.protocols.models import FunctionTool

from .engine.base import SchemaCheck
from .session.tool_calls import check_tools, parameters_problem


class ToolRunner(Protocol):
    """The functions the runtime offers to every conversation's model and runs itself.

    `definitions`: what the model is told, in order. `run`: one call's output, from the tool's name and
    the arguments as the model wrote them (JSON; empty means `{}`); it never raises: an unknown tool, bad
    arguments, an exception, a timeout all become an `{"error": ...}` output that the model reads. It may
    be cancelled (the user talked over the response). `logger`: a structlog logger bound to the
    conversation, for failures. `max_rounds`: the round policy: after that many rounds of server calls
    answered and continued automatically in a row, the continuation gets `tool_choice: "none"`.
    """

    @property
    def definitions(self) -> list[FunctionTool]: ...

    @property
    def max_rounds(self) -> int: ...

    async def run(self, name: str, arguments: str, *, logger: Any = None) -> str: ...


class NoTools:
    """The runner of a runtime that serves no tools: the model is offered none, so none is ever called."""

    max_rounds = 0

    @property
    def definitions(self) -> list[FunctionTool]:
        """No definitions."""
        return []

    async def run(self, name: str, arguments: str, *, logger: Any = None) -> str:
        """An error output: there is no tool to run."""
        return json.dumps({"error": f"unknown tool {name!r} (the server has no tools)"})


NO_TOOLS = NoTools()
"""The runner used when the runtime is given none."""


def check_server_tools(tools: ToolRunner, check_schema: SchemaCheck) -> None:
    """Check that the runtime can serve these tools: valid, distinct names, schemas that `check_schema` (the
    model's capability) says the decoder can enforce.

    Raises:
        ValueError: the first problem, in one sentence.
    """
    try:
        check_tools(tools.definitions, "tools", partial(parameters_problem, enforceable=check_schema))
    except ProtocolError as exc:
        raise ValueError(exc.message) from None
