"""Qwen2.5's tool format, which Qwen2-Audio's chat template extended with tools follows.

A `# Tools` section with one JSON line per function in the system turn; each call as
`<tool_call>\\n{"name": …, "arguments": {…}}\\n</tool_call>` after the assistant's text (one `\\n`
between parts); consecutive results as `<tool_response>\\n…\\n</tool_response>` blocks in one user turn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..base import FunctionSpec, HistoryCall, ToolUse
from ..tool_format import CallParser, CallProgress, ToolFormat, arguments_schema


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

    def call_text(self, call: HistoryCall) -> str:
        """One call as the template writes it (arguments re-serialized as `tojson` does)."""
        try:
            arguments = json.dumps(json.loads(call.arguments), ensure_ascii=False)
        except ValueError:
            arguments = call.arguments
        return f'{self.opener}\n{{"name": "{call.name}", "arguments": {arguments}}}\n{self.closer}'

    def assistant_content(self, text: str, calls: Sequence[HistoryCall]) -> str:
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
