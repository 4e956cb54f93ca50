"""Function calling on the wire: tool definitions checked, and each call streamed as its own item.

A call's events, in order: `response.output_item.added` and `conversation.item.added` (a
`function_call` item with its `call_id` and `name`), `response.function_call_arguments.delta`…,
`response.function_call_arguments.done`, `response.output_item.done`, `conversation.item.done`
(LiveKit reads the calls from `output_item.done`, Pipecat from `conversation.item.added` and
`arguments.done`). A call cut off before it is complete never gets its `done` events: it is taken
out of the response and the conversation (`conversation.item.deleted`), so no client runs it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

from aural.protocols import client_events as ce
from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import (
    FunctionCallItem,
    FunctionTool,
    Response,
    ResponseParams,
    SessionConfig,
    ToolChoice,
    ToolChoiceFunction,
)
from aural.protocols.server_events import ServerEventBase, new_id

from ..engine.base import FunctionSpec, SchemaCheck, ToolUse

_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def check_tools(tools: Sequence[FunctionTool], param: str, verdict: SchemaCheck) -> None:
    """Check the client's tool definitions.

    Args:
        param: where they sit (`session`, `response`), for the error's `param`.
        verdict: why a schema cannot be a tool's parameters, None if it can (`parameters_problem`, or its
            answer computed ahead, off the event loop).

    Raises:
        ProtocolError: a bad name, a duplicate name, or parameters that are not a JSON Schema of an object (or
            that the decoder cannot enforce).
    """
    names: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"{param}.tools.{index}"
        if not _NAME.fullmatch(tool.name):
            raise ProtocolError(
                ErrorCode.INVALID_VALUE,
                f"Invalid function name '{tool.name}': use 1 to 64 letters, digits, '_' or '-'.",
                param=f"{where}.name",
            )
        if tool.name in names:
            raise ProtocolError(
                ErrorCode.INVALID_VALUE, f"Duplicate function name '{tool.name}'.", param=f"{where}.name"
            )
        names.add(tool.name)
        if tool.parameters:
            _check_schema(tool.name, tool.parameters, f"{where}.parameters", verdict)


def check_choice(tools: Sequence[FunctionTool], choice: ToolChoice | None, param: str, server: bool) -> None:
    """Check the tool choice of a response against the client tools it may call (checked when a response
    uses it, not when a session update sets it: clients send tools and tool_choice in either order).

    Server tools stay private: a named choice must name one of the client's own tools (forcing a server
    tool is the operator's decision, not a client's), and no error depends on the server tools' names
    (a client tool of a server tool's name hides it instead, see `tools_for`).

    Args:
        param: where the choice was set (`session`, `response`), for the error's `param`.
        server: whether the runtime offers tools of its own too, which 'required' may call.

    Raises:
        ProtocolError: a choice that names none of the client's tools, or 'required' with no tool at all.
    """
    names = {tool.name for tool in tools}
    if isinstance(choice, ToolChoiceFunction) and choice.name not in names:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"tool_choice names the function '{choice.name}', which is not among the tools.",
            param=f"{param}.tool_choice.name",
        )
    if choice == "required" and not names and not server:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE, "tool_choice 'required' needs at least one tool.", param=f"{param}.tool_choice"
        )


def _check_schema(name: str, schema: Mapping[str, Any], param: str, verdict: SchemaCheck) -> None:
    if schema.get("type") != "object":
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"The parameters of '{name}' must be a JSON Schema with type 'object'.",
            param=param,
        )
    problem = verdict(schema)
    if problem is not None:
        raise ProtocolError(ErrorCode.INVALID_VALUE, f"The parameters of '{name}' {problem}", param=param)


def parameters_problem(schema: Mapping[str, Any], enforceable: SchemaCheck) -> str | None:
    """Why `schema` cannot be a tool's parameters (the end of a sentence that begins with the tool's name), or
    None: it must be a valid JSON Schema, and one the model can enforce while decoding (`enforceable`, its
    engine's capability). The costly part of checking tools (milliseconds a schema), so the session has it
    done off the event loop (`CheckSchemas`)."""
    try:
        jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator).check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        return f"are not a valid JSON Schema: {exc.message}"
    problem = enforceable(schema)
    return None if problem is None else f"cannot be enforced while decoding: {problem}"


def schema_key(schema: Mapping[str, Any]) -> str:
    """A short key that names a schema by its content (its canonical JSON's hash)."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


class SchemaVerdicts:
    """The session's verdicts on tool schemas (`parameters_problem`), by `schema_key`: computed off the event
    loop by the ingest stage for what client events bring (`missing`, then `learn`), so that checking tools
    on the loop is a lookup. A schema it has no verdict for is judged on the spot. Holds at most `bound`
    verdicts (it forgets them all past it: they are computed again off the loop when they come again).

    Args:
        enforceable: the engine's capability (`ModelCapabilities.check_schema`).
    """

    def __init__(self, enforceable: SchemaCheck, bound: int = 256) -> None:
        self._enforceable = enforceable
        self._bound = bound
        self._known: dict[str, str | None] = {}

    def __call__(self, schema: Mapping[str, Any]) -> str | None:
        key = schema_key(schema)
        if key not in self._known:
            self._known[key] = parameters_problem(schema, self._enforceable)
        return self._known[key]

    def missing(self, event: ce.ClientEvent, config: SessionConfig) -> tuple[tuple[str, Mapping[str, Any]], ...]:
        """The schemas handling `event` will check that have no verdict yet: the tools it carries and, for a
        `session.update`, the session's own (which it checks again)."""
        if isinstance(event, ce.SessionUpdate):
            tools = [*(event.session.tools or ()), *(config.tools or ())]
        elif isinstance(event, ce.ResponseCreate) and event.response is not None:
            tools = list(event.response.tools or ())
        else:
            return ()
        schemas = {schema_key(tool.parameters): tool.parameters for tool in tools if tool.parameters}
        return tuple((key, schema) for key, schema in schemas.items() if key not in self._known)

    def learn(self, verdicts: Mapping[str, str | None]) -> None:
        """Keep verdicts computed off the loop."""
        if len(self._known) + len(verdicts) > self._bound:
            self._known.clear()
        self._known.update(verdicts)


def tools_for(
    params: ResponseParams, config: SessionConfig, server: Sequence[FunctionTool], verdict: SchemaCheck
) -> ToolUse | None:
    """The tools a response with `params` may call: the session's unless the response names its own, and the
    server's (`server`: none out of the conversation, where their outputs could not go) that no client tool
    hides by taking its name.

    Raises:
        ProtocolError: the response's tools or tool_choice are invalid.
    """
    tools = client_tools(params, config)
    if params.tools is not None:
        check_tools(tools, "response", verdict)
    choice = params.tool_choice if params.tool_choice is not None else config.tool_choice
    check_choice(tools, choice, "response" if params.tool_choice is not None else "session", bool(server))
    parallel = params.parallel_tool_calls if params.parallel_tool_calls is not None else config.parallel_tool_calls
    names = {tool.name for tool in tools}
    return tool_use([*tools, *(tool for tool in server if tool.name not in names)], choice, parallel)


def client_tools(params: ResponseParams, config: SessionConfig) -> list[FunctionTool]:
    """The client's tools for a response with `params`: its own, or else the session's."""
    return params.tools if params.tools is not None else config.tools or []


def tool_use(tools: Sequence[FunctionTool], choice: ToolChoice | None, parallel: bool | None) -> ToolUse | None:
    """The engine's view of checked tools; None without tools."""
    if not tools:
        return None
    specs = tuple(FunctionSpec(tool.name, tool.description, tool.parameters or {}) for tool in tools)
    allow_many = parallel is not False
    if isinstance(choice, ToolChoiceFunction):
        return ToolUse(specs, "required", choice.name, allow_many)
    return ToolUse(specs, choice or "auto", None, allow_many)


@dataclass
class CallRun:
    """The wire state of one function call of a response."""

    item: FunctionCallItem
    output_index: int
    previous_item_id: str | None
    done: bool = False

    @classmethod
    def open(
        cls, response: Response, name: str, previous_item_id: str | None, in_conversation: bool
    ) -> tuple[CallRun, list[ServerEventBase]]:
        """A new call item at the end of the response's output, and the events that announce it."""
        item = FunctionCallItem(
            id=new_id("item"), call_id=new_id("call"), name=name, arguments="", status="in_progress"
        )
        run = cls(item, len(response.output), previous_item_id)
        response.output.append(item)
        public = item.model_copy(deep=True)
        events: list[ServerEventBase] = [
            se.ResponseOutputItemAdded(response_id=response.id, output_index=run.output_index, item=public)
        ]
        if in_conversation:
            events.append(se.ConversationItemAdded(item=public, previous_item_id=previous_item_id))
        return run, events

    @property
    def item_id(self) -> str:
        assert self.item.id is not None
        return self.item.id

    def delta(self, response_id: str, text: str) -> list[ServerEventBase]:
        self.item.arguments += text
        return [
            se.ResponseFunctionCallArgumentsDelta(
                response_id=response_id,
                item_id=self.item_id,
                output_index=self.output_index,
                call_id=self.item.call_id,
                delta=text,
            )
        ]

    def finish(self, response_id: str, arguments: str, in_conversation: bool) -> list[ServerEventBase]:
        """The call is complete: its `done` events."""
        self.done = True
        self.item.arguments = arguments
        self.item.status = "completed"
        public = self.item.model_copy(deep=True)
        events: list[ServerEventBase] = [
            se.ResponseFunctionCallArgumentsDone(
                response_id=response_id,
                item_id=self.item_id,
                output_index=self.output_index,
                call_id=self.item.call_id,
                name=self.item.name,
                arguments=arguments,
            ),
            se.ResponseOutputItemDone(response_id=response_id, output_index=self.output_index, item=public),
        ]
        if in_conversation:
            events.append(se.ConversationItemDone(item=public, previous_item_id=self.previous_item_id))
        return events

    def drop(self, response: Response, in_conversation: bool) -> list[ServerEventBase]:
        """The call was cut off: out of the response's output, and out of the conversation."""
        response.output = [item for item in response.output if item is not self.item]
        return [se.ConversationItemDeleted(item_id=self.item_id)] if in_conversation else []
