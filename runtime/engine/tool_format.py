"""How a model family writes tools, calls and results: the adapter interface the engine works through.

A model family defines its own `ToolFormat` (Qwen2-Audio's lives in `qwen2_audio.tool_format`): the
section that describes the tools in the system turn, an assistant turn's calls, the results' turn, a
grammar that constrains a reply's calls, and a parser that reads calls back out while they stream.
Nothing here imports torch or the grammar library.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .base import FunctionSpec, HistoryCall, ToolUse


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
    def assistant_content(self, text: str, calls: Sequence[HistoryCall]) -> str:
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
