"""Function calling on the model side: the tools a reply may use, the events of a call, and the
per-model format that puts tools, calls and results into the prompt and reads calls back out.

A model family defines its own `ToolFormat`. `QwenToolFormat` follows Qwen2.5's chat template: a
`# Tools` section with one JSON line per function in the system turn; each call as
`<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>` after the assistant's text (one `\\n`
between parts); consecutive results as `<tool_response>\\n…\\n</tool_response>` blocks in one user
turn. Nothing here imports torch or the grammar library.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class FunctionSpec:
    """A function the model may call. `parameters` is the JSON Schema of its arguments object."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolUse:
    """The tools of one reply and how they may be used.

    `mode` "auto": the model chooses between text and calls (a call, once opened, is constrained);
    "required": the reply is one or more calls, constrained from its first token; "none": the tools
    are shown to the model but nothing is read as a call. `function` narrows "required" to one
    function (a named `tool_choice`). `parallel` False allows at most one call per reply.
    """

    functions: tuple[FunctionSpec, ...]
    mode: Literal["auto", "none", "required"] = "auto"
    function: str | None = None
    parallel: bool = True

    @property
    def callable(self) -> tuple[FunctionSpec, ...]:
        """The functions a call of this reply may name."""
        if self.function is None:
            return self.functions
        return tuple(spec for spec in self.functions if spec.name == self.function)


@dataclass(frozen=True)
class ToolCall:
    """A call as it stands in the history: the function's name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDelta:
    """Engine event: call `index` of the reply goes on. The first delta of a call names the function
    (its `arguments` may be empty); later ones carry new argument text."""

    index: int
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDone:
    """Engine event: call `index` is complete; `arguments` is the whole JSON object, as generated."""

    index: int
    name: str
    arguments: str


@dataclass(frozen=True)
class CallProgress:
    """What one piece of call text told: the name (once known), new argument text, whether the call is
    complete, and text past its end (when one token spans the end of a call)."""

    name: str | None
    arguments: str = ""
    done: bool = False
    rest: str = ""


class CallParser(ABC):
    """Reads the text of one call (from its opener on) as it streams in."""

    @abstractmethod
    def feed(self, text: str) -> CallProgress:
        """Take more call text."""


class ToolFormat(ABC):
    """How one model family writes tools, calls and results."""

    opener: str
    """The text that starts a call."""
    separator: str
    """The text between the assistant's words and a call, or between two calls."""

    @abstractmethod
    def system_section(self, functions: Sequence[FunctionSpec]) -> str:
        """Text appended to the system turn's content that describes the tools."""

    @abstractmethod
    def assistant_content(self, text: str, calls: Sequence[ToolCall]) -> str:
        """The content of an assistant turn that says `text` then makes `calls`."""

    @abstractmethod
    def results_content(self, outputs: Sequence[str]) -> str:
        """The content of the user turn that returns consecutive results."""

    @abstractmethod
    def grammar(self, use: ToolUse, *, after_opener: bool) -> str:
        """A Lark grammar (llguidance dialect) for the calls of a reply.

        `after_opener` False: the reply is only calls, from its first token. True: the model has
        just written the opener in auto mode; the grammar covers the rest of that call and any
        further calls.
        """

    @abstractmethod
    def parser(self) -> CallParser:
        """A parser for the next call."""


STRICT_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
"""llguidance JSON options: no free whitespace (a random model fills it), separators as json.dumps."""


def arguments_schema(spec: FunctionSpec) -> dict[str, Any]:
    """The schema the arguments must satisfy, with the grammar's JSON options. No parameters: `{}`."""
    schema = dict(spec.parameters) or {"type": "object", "properties": {}, "additionalProperties": False}
    return {**schema, "x-guidance": STRICT_JSON}


def _lark_string(text: str) -> str:
    return json.dumps(text)


class QwenToolFormat(ToolFormat):
    """Qwen2.5's tool format (see the module docstring)."""

    opener = "<tool_call>"
    separator = "\n"
    closer = "</tool_call>"

    def system_section(self, functions: Sequence[FunctionSpec]) -> str:
        lines = "".join("\n" + json.dumps(tool_json(spec), ensure_ascii=False) for spec in functions)
        return (
            "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>{lines}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
            "<args-json-object>}\n</tool_call>"
        )

    def call_text(self, call: ToolCall) -> str:
        """One call as the template writes it (arguments re-serialized as `tojson` does)."""
        try:
            arguments = json.dumps(json.loads(call.arguments), ensure_ascii=False)
        except ValueError:
            arguments = call.arguments
        return f'{self.opener}\n{{"name": "{call.name}", "arguments": {arguments}}}\n{self.closer}'

    def assistant_content(self, text: str, calls: Sequence[ToolCall]) -> str:
        return self.separator.join([*([text] if text else []), *(self.call_text(call) for call in calls)])

    def results_content(self, outputs: Sequence[str]) -> str:
        return "\n".join(f"<tool_response>\n{output}\n</tool_response>" for output in outputs)

    def grammar(self, use: ToolUse, *, after_opener: bool) -> str:
        rules, bodies = [], []
        for index, spec in enumerate(use.callable):
            head = f'\n{{"name": "{spec.name}", "arguments": '
            rules.append(f"body{index}: {_lark_string(head)} args{index} {_lark_string('}' + chr(10) + self.closer)}")
            rules.append(f"args{index}: %json {json.dumps(arguments_schema(spec))}")
            bodies.append(f"body{index}")
        rules.append(f"body: {' | '.join(bodies)}")
        rules.append(f"call: {_lark_string(self.opener)} body")
        more = f" ({_lark_string(self.separator)} call)*" if use.parallel else ""
        first = "body" if after_opener else "call"
        return "\n".join([f"start: {first}{more}", *rules])

    def parser(self) -> CallParser:
        return _QwenCallParser(self.opener, "}\n" + self.closer)


def tool_json(spec: FunctionSpec) -> dict[str, Any]:
    """A function as the chat templates list it (OpenAI's chat-completions tool shape)."""
    function: dict[str, Any] = {"name": spec.name}
    if spec.description is not None:
        function["description"] = spec.description
    function["parameters"] = dict(spec.parameters)
    return {"type": "function", "function": function}


class _QwenCallParser(CallParser):
    """The grammar fixes the call's shape, so reading it is a scan: the name between fixed texts, then
    the arguments object up to the brace that closes it (strings and escapes tracked), then the end."""

    def __init__(self, opener: str, tail: str) -> None:
        self._head = f'{opener}\n{{"name": "'
        self._tail = tail
        self._text = ""
        self._name: str | None = None
        self._scanned = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._args_end: int | None = None

    def feed(self, text: str) -> CallProgress:
        self._text += text
        if self._name is None:
            name_end = self._text.find('"', len(self._head))
            marker = '", "arguments": '
            if name_end < 0 or len(self._text) < name_end + len(marker):
                return CallProgress(None)
            self._name = self._text[len(self._head) : name_end]
            self._scanned = name_end + len(marker)
        start = self._scanned
        if self._args_end is None:
            self._scan()
        stop = self._args_end if self._args_end is not None else len(self._text)
        new = self._text[start:stop] if start < stop else ""
        after = self._text[self._args_end :] if self._args_end is not None else ""
        if after.startswith(self._tail):
            return CallProgress(self._name, new, done=True, rest=after[len(self._tail) :])
        return CallProgress(self._name, new)

    def _scan(self) -> None:
        for position in range(self._scanned, len(self._text)):
            char = self._text[position]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._args_end = self._scanned = position + 1
                    return
        self._scanned = len(self._text)
