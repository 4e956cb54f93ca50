"""Constrained decoding of tool calls with llguidance.

A grammar (from the model's `ToolFormat`) is compiled per reply; the tokenizer's set-up for the
grammar library is done once per engine and cached, as it is the costly part (about 2 s for a 151k
vocabulary). The mask comes back as booleans over the vocabulary; the model code applies it to the
logits. The stop ids are given to the library so that a finished grammar allows ending the turn.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import llguidance
import llguidance.hf
import llguidance.numpy
import numpy as np
import numpy.typing as npt

from ..errors import GrammarError
from .tool_format import STRICT_JSON

BoolMask = npt.NDArray[np.bool_]


class _HfTokenizer(Protocol):
    def __len__(self) -> int: ...


def schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why the grammar library cannot constrain arguments to `schema`, or None when it can."""
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(dict(schema), overrides=dict(STRICT_JSON))  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    return messages[0] if is_error else None


class Constraint:
    """One reply's grammar state: the mask of allowed tokens, and the tokens taken so far."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int) -> None:
        self._matcher = matcher
        self._vocab_size = vocab_size
        self._words = np.zeros((vocab_size + 31) // 32, dtype=np.int32)

    def allowed(self) -> BoolMask:
        """The tokens the grammar allows next (stop ids when it is complete)."""
        llguidance.numpy.fill_next_token_bitmask(self._matcher, self._words.reshape(1, -1))
        bits = np.unpackbits(self._words.view(np.uint8), bitorder="little")[: self._vocab_size]
        return bits.astype(np.bool_)

    def forced(self) -> list[int]:
        """The tokens the grammar allows no alternative to from here (the call's closing text, say)."""
        return list(self._matcher.compute_ff_tokens())

    def consume(self, token: int) -> bool:
        """Advance by one sampled token; False if the grammar does not allow it."""
        return bool(self._matcher.consume_token(token))

    def consume_text(self, tokenizer: llguidance.LLTokenizer, text: str) -> bool:
        """Advance by text the model wrote in a token the grammar did not see (after an opener)."""
        return not text or bool(self._matcher.consume_tokens(tokenizer.tokenize_str(text)))


class Grammars:
    """Compiles grammars for one tokenizer; its set-up happens once, on first use.

    Args:
        tokenizer: the model's Hugging Face tokenizer (a fast one).
        vocab_size: the number of logits the model produces.
        stop_ids: every id that ends a turn (`<|im_end|>` and the tokenizer's eos).
    """

    def __init__(self, tokenizer: _HfTokenizer, vocab_size: int, stop_ids: Collection[int]) -> None:
        self._hf = tokenizer
        self.vocab_size = vocab_size
        self._stop_ids = sorted(stop_ids)
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self) -> llguidance.LLTokenizer:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = llguidance.hf.from_tokenizer(
                    self._hf,
                    n_vocab=self.vocab_size,
                    eos_token=self._stop_ids,
                )
            return self._tokenizer

    def constraint(self, lark: str) -> Constraint:
        """A fresh grammar state for `lark`.

        Raises:
            GrammarError: the grammar does not compile.
        """
        matcher = llguidance.LLMatcher(self.tokenizer, llguidance.LLMatcher.grammar_from_lark(lark), log_level=0)
        if matcher.is_error():
            raise GrammarError(matcher.get_error())
        return Constraint(matcher, self.vocab_size)
