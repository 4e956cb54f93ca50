"""Incremental detokenization that never emits half a character.

A token can end inside a multi-byte UTF-8 sequence (always so with a byte-level vocabulary). The text
of new tokens is decoded together with the previously emitted tokens as left context (tokenizers may
add or drop a leading space depending on it), and held back while it ends in U+FFFD: a character in progress.
"""

from __future__ import annotations

from typing import Protocol

_REPLACEMENT = "\ufffd"
_MAX_HELD = 8  # a sequence still incomplete after this many tokens is invalid: emit it as it is


class TokenDecoder(Protocol):
    """What the detokenizer needs of a tokenizer: token ids back to text."""

    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class IncrementalDetokenizer:
    """Feed token ids one by one; get back the new whole characters."""

    def __init__(self, tokenizer: TokenDecoder) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the left context
        self._read = 0  # tokens up to here have been emitted

    def _decode(self, start: int, stop: int) -> str:
        return self._tokenizer.decode(self._ids[start:stop], skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now complete (possibly empty)."""
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
        """Return whatever is held back, complete or not (end of generation)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        if self._read == len(self._ids):
            return ""
        context = self._decode(self._prefix, self._read)
        text = self._decode(self._prefix, len(self._ids))
        held = len(self._ids) - self._read
        if not final and text.endswith(_REPLACEMENT) and held < _MAX_HELD:
            return ""
        new = text[len(context) :] if text.startswith(context) else text
        self._prefix, self._read = self._read, len(self._ids)
        return new
