"""One reply's tokens → engine events: text deltas, and function calls when tools are in use.

Without tools (or with `tool_choice` "none") this is the incremental detokenizer and nothing else.
In "auto" mode text streams out, except a tail that could be the start of a call opener, which is
held back; once the opener is complete the rest of the reply is constrained by the tools' grammar
and read as calls. In "required" mode (or with a named function) the whole reply is constrained from
its first token. A call still open when the reply ends (token cap, cancellation) is dropped: its
tokens are cut from what the reply keeps, and it never completes.
"""

from __future__ import annotations

from bisect import bisect_left

from ..errors import GrammarError
from .base import GenerationEvent, TextDelta, ToolCallDelta, ToolCallDone, ToolUse
from .detokenizer import TokenText
from .tool_format import CallParser, ToolFormat
from .tool_grammar import BoolMask, Constraint, Grammars


class ReplyReader:
    """Feed a reply's tokens one by one (stop tokens excluded); get its events back.

    Args:
        token_text: turns the model's token ids into text.
        use: the reply's tools, or None.
        tool_format: how the model writes calls.
        grammars: compiles the call grammar.

    Raises:
        GrammarError: the tools' grammar does not compile ("required" mode, at once).
    """

    def __init__(self, token_text: TokenText, use: ToolUse | None, tool_format: ToolFormat, grammars: Grammars) -> None:
        self._detokenizer = token_text.detokenizer()
        self._use = use if use is not None and use.mode != "none" and use.callable else None
        self._format = tool_format
        self._grammars = grammars
        self._ends: list[int] = []  # characters of reply text after each token
        self._chars = 0
        self._pending = ""  # text not sent yet: it may be the start of an opener
        self._held: list[int] = []  # tokens behind the pending text
        self._constraint: Constraint | None = None
        self._parser: CallParser | None = None
        self._between = ""  # text after a call (a separator, the next opener)
        self._calls = 0
        self._name = ""
        self._arguments = ""
        self._call_start = 0  # character where the open call (with its separator) begins
        self.call_tokens = 0
        """Tokens of the call being written (0 outside calls), for the per-call cap."""
        if self._use is not None and self._use.mode == "required":
            self._constraint = grammars.constraint(tool_format.grammar(self._use, after_opener=False))
            self._parser = tool_format.parser()

    @property
    def call_name(self) -> str:
        """The name of the call being written, once read ("" outside calls or before its name is complete)."""
        return self._name

    @property
    def unnamed_call(self) -> bool:
        """Whether a call is being written whose name is not complete yet (no event has announced it)."""
        return self._parser is not None and not self._name

    def allowed(self) -> BoolMask | None:
        """The tokens allowed next, or None when decoding is free."""
        return self._constraint.allowed() if self._constraint is not None else None

    def forced(self) -> list[int]:
        """The tokens the grammar forces next (none while decoding is free): they need no sampling, and the
        engine feeds them to the model in one pass."""
        return self._constraint.forced() if self._constraint is not None else []

    def push(self, token: int) -> list[GenerationEvent]:
        """Take one sampled (or forced) token; return the events it completes.

        Raises:
            GrammarError: the token breaks the grammar (the mask was not applied).
        """
        if self._constraint is not None and not self._constraint.consume(token):
            raise GrammarError(f"token {token} is outside the tools' grammar")
        text = self._detokenizer.push(token)
        self._chars += len(text)
        self._ends.append(self._chars)
        if self._constraint is not None:
            self.call_tokens += 1
            return self._call_text(text)
        self._held.append(token)
        return self._free_text(text)

    def finish(self) -> tuple[list[GenerationEvent], int]:
        """The reply ended: the last events, and how many of its tokens to keep (an open call's go)."""
        text = self._detokenizer.flush()
        if self._constraint is None:
            self._pending += text
            events: list[GenerationEvent] = [TextDelta(self._pending, tuple(self._held))] if self._pending else []
            return events, len(self._ends)
        if self._parser is None and not self._between:
            return [], len(self._ends)
        return [], bisect_left(self._ends, self._call_start) + (1 if self._call_start else 0)

    # --- free text (auto mode) ---------------------------------------------------------------------

    def _free_text(self, text: str) -> list[GenerationEvent]:
        self._pending += text
        if self._use is None:
            return self._send_text(len(self._pending))
        opener = self._format.opener
        found = self._pending.find(opener)
        if found < 0:
            marks = (self._format.separator + opener, opener)
            return self._send_text(len(self._pending) - max(_held_back(self._pending, mark) for mark in marks))
        before = self._pending[:found]
        rest = self._pending[found + len(opener) :]
        start = self._chars - len(self._pending)
        separator = self._format.separator
        if before.endswith(separator):
            before = before[: -len(separator)]
        events = [TextDelta(before, tuple(self._held))] if before else []
        self._pending, self._held = "", []
        self._open_constraint(start + len(before))
        self._parser = self._format.parser()
        return events + self._call_text(opener + rest, fed=len(opener))

    def _send_text(self, length: int) -> list[GenerationEvent]:
        if length <= 0:
            return []
        text, self._pending = self._pending[:length], self._pending[length:]
        held, self._held = tuple(self._held), []
        return [TextDelta(text, held)]

    def _open_constraint(self, start: int) -> None:
        assert self._use is not None
        self._constraint = self._grammars.constraint(self._format.grammar(self._use, after_opener=True))
        self._call_start = start
        self.call_tokens = 0

    # --- calls -------------------------------------------------------------------------------------

    def _call_text(self, text: str, fed: int | None = None) -> list[GenerationEvent]:
        """Route text written under the grammar: into the open call, or between calls."""
        if fed is not None:  # the opener's token may hold text past it, which the grammar has not seen
            assert self._constraint is not None
            if not self._constraint.consume_text(self._grammars.tokenizer, text[fed:]):
                raise GrammarError("the text after the call opener does not fit the tools' grammar")
        events: list[GenerationEvent] = []
        while text:
            if self._parser is None:
                self._between += text
                found = self._between.find(self._format.opener)
                if found < 0:
                    return events
                text, self._between = self._between[found:], ""
                self._parser = self._format.parser()
                self.call_tokens = 1
            progress = self._parser.feed(text)
            text = progress.rest
            if progress.name is None:
                continue
            if progress.arguments or not self._name:
                self._name = progress.name
                self._arguments += progress.arguments
                events.append(ToolCallDelta(self._calls, progress.name, progress.arguments))
            if progress.done:
                events.append(ToolCallDone(self._calls, self._name, self._arguments))
                self._calls += 1
                self._parser, self._name, self._arguments = None, "", ""
                self._call_start = self._chars - len(text)
                self.call_tokens = 0
        return events


def _held_back(text: str, mark: str) -> int:
    """The length of the longest tail of `text` that is a proper prefix of `mark`."""
    for length in range(min(len(text), len(mark) - 1), 0, -1):
        if mark.startswith(text[-length:]):
            return length
    return 0
