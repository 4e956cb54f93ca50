"""Incremental detokenization that never emits half a character and never holds back a bad byte.

A token can end inside a multi-byte UTF-8 sequence (always so with a byte-level vocabulary). For a
byte-level BPE tokenizer (Qwen2's) each token's bytes are known, so the reply's bytes run through an
incremental UTF-8 decoder: exactly the bytes that can still complete a character wait, and a byte that can
never be part of one (a stray continuation byte, a cut-off sequence) becomes U+FFFD at once. For any other
tokenizer the new tokens are decoded together with the previously emitted ones as left context (a
tokenizer may add or drop a leading space depending on it) and held back while the text ends in U+FFFD,
for a bounded number of tokens.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Any, Protocol

from tokenizers.decoders import ByteLevel
from transformers.convert_slow_tokenizer import bytes_to_unicode

_REPLACEMENT = "\ufffd"
_MAX_HELD = 8  # (other tokenizers) a sequence still incomplete after this many tokens is invalid: emit it


class TokenDecoder(Protocol):
    """What the detokenizer needs of a tokenizer: token ids back to text."""

    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...


class Detokenizer(Protocol):
    """One reply's token-to-text state."""

    def push(self, token_id: int) -> str:
        """Add one token; return the text that is now complete (possibly empty)."""
        ...

    def flush(self) -> str:
        """Return whatever is held back, complete or not (end of generation)."""
        ...


class TokenText:
    """How one tokenizer's tokens become text; made once per engine, it makes each reply's detokenizer.

    Args:
        tokenizer: the model's Hugging Face tokenizer.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer: TokenDecoder = tokenizer
        self._bytes = _byte_table(tokenizer)

    @property
    def byte_level(self) -> bool:
        """Whether each token's bytes are known (replies then hold back only a character in progress)."""
        return self._bytes is not None

    def detokenizer(self) -> Detokenizer:
        """A fresh detokenizer for one reply."""
        if self._bytes is not None:
            return _ByteDetokenizer(self._bytes)
        return _ContextDetokenizer(self.tokenizer)


def _byte_table(tokenizer: Any) -> Sequence[bytes] | None:
    """Each token id's bytes as `decode(..., skip_special_tokens=True)` writes them, for a byte-level BPE
    tokenizer; None for any other kind."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not isinstance(backend.decoder, ByteLevel):
        return None
    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    special = set(tokenizer.all_special_ids)
    added = tokenizer.added_tokens_decoder
    table: list[bytes] = []
    for token_id, token in enumerate(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))):
        if token is None or token_id in special:
            table.append(b"")
        elif token_id in added:
            table.append(added[token_id].content.encode())
        elif all(char in byte_of for char in token):
            table.append(bytes(byte_of[char] for char in token))
        else:
            return None
    return table


class _ByteDetokenizer:
    def __init__(self, table: Sequence[bytes]) -> None:
        self._table = table
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._decoder.decode(self._table[token_id] if token_id < len(self._table) else b"")

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class _ContextDetokenizer:
    def __init__(self, tokenizer: TokenDecoder) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        self._prefix = 0  # start of the left context
        self._read = 0  # tokens up to here have been emitted

    def _decode(self, start: int, stop: int) -> str:
        return self._tokenizer.decode(self._ids[start:stop], skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        self._ids.append(token_id)
        return self._advance(final=False)

    def flush(self) -> str:
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
