"""The incremental detokenizer never emits half a character and loses nothing."""

from __future__ import annotations

import pytest

from aural.runtime.engine.detokenizer import IncrementalDetokenizer
from aural.runtime.engine.qwen2_audio.presets import byte_level_processor

pytestmark = pytest.mark.model

TOKENIZER = byte_level_processor().tokenizer


def _stream(ids: list[int]) -> list[str]:
    detokenizer = IncrementalDetokenizer(TOKENIZER)
    pieces = [detokenizer.push(i) for i in ids]
    return [*pieces, detokenizer.flush()]


def test_multibyte_characters_arrive_whole() -> None:
    text = "héllo 你好 🎧!"
    pieces = _stream(TOKENIZER.encode(text, add_special_tokens=False))
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert "你" in pieces and "🎧" in pieces  # each emitted the moment its last byte arrived


def test_invalid_bytes_are_flushed_not_held_forever() -> None:
    ids = [0xE4, 0xB8, *TOKENIZER.encode("ok", add_special_tokens=False)]  # a cut-off 3-byte sequence
    pieces = _stream(ids)
    assert "".join(pieces).endswith("ok")
    lone = [0xF0] * 12  # never completes: released after a bounded hold
    assert any(_stream(lone)[:-1])


def test_special_tokens_are_not_text() -> None:
    im_end = TOKENIZER.convert_tokens_to_ids("<|im_end|>")
    assert "".join(_stream([*TOKENIZER.encode("a", add_special_tokens=False), im_end])) == "a"
