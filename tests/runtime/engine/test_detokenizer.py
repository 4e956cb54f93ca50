"""The incremental detokenizer never emits half a character, never holds a bad byte, and loses nothing."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from transformers import Qwen2Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from aural.runtime.engine.detokenizer import TokenText
from aural.runtime.engine.qwen2_audio.presets import byte_level_processor

pytestmark = pytest.mark.model

TOKENIZER = byte_level_processor().tokenizer
BYTES = TokenText(TOKENIZER)
CONTEXT = TokenText(SimpleNamespace(decode=TOKENIZER.decode))  # a tokenizer whose bytes are not known


def _bpe_tokenizer() -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer with merges: tokens of several bytes, one of them half a character."""
    symbols = bytes_to_unicode()
    vocab = {symbols[b]: b for b in range(256)}

    def spell(data: bytes) -> str:
        return "".join(symbols[b] for b in data)

    merges = [(spell(b" "), spell(b"h")), (spell(b" h"), spell(b"e")), (spell(b"\xe4"), spell(b"\xbd"))]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_end|>"]})
    return tokenizer


def _stream(text_of: TokenText, ids: list[int]) -> list[str]:
    detokenizer = text_of.detokenizer()
    pieces = [detokenizer.push(i) for i in ids]
    return [*pieces, detokenizer.flush()]


@pytest.mark.parametrize("text_of", [BYTES, CONTEXT], ids=["bytes", "context"])
def test_multibyte_characters_arrive_whole(text_of: TokenText) -> None:
    text = "héllo 你好 🎧!"
    pieces = _stream(text_of, TOKENIZER.encode(text, add_special_tokens=False))
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces)
    assert "你" in pieces and "🎧" in pieces  # each emitted the moment its last byte arrived


def test_a_byte_that_can_never_be_a_character_is_emitted_at_once() -> None:
    assert BYTES.byte_level and not CONTEXT.byte_level
    assert _stream(BYTES, [0x80, 0x41]) == ["\ufffd", "A", ""]  # a stray continuation byte
    cut = _stream(BYTES, [0xE4, 0xB8, *TOKENIZER.encode("ok", add_special_tokens=False)])
    assert cut == ["", "", "\ufffdo", "k", ""]  # held while it could complete, released by the byte that cannot
    lone = _stream(BYTES, [0xF0] * 4)
    assert lone == ["", "\ufffd", "\ufffd", "\ufffd", "\ufffd"]


def test_without_known_bytes_invalid_text_is_held_a_bounded_time() -> None:
    pieces = _stream(CONTEXT, [0xE4, 0xB8, *TOKENIZER.encode("ok", add_special_tokens=False)])
    assert "".join(pieces).endswith("ok")
    assert any(_stream(CONTEXT, [0xF0] * 12)[:-1])  # never completes: released before the end


@pytest.mark.parametrize("tokenizer", [TOKENIZER, _bpe_tokenizer()], ids=["bytes", "bpe"])
def test_any_token_sequence_streams_exactly_what_decode_gives(tokenizer: Qwen2Tokenizer) -> None:
    text_of = TokenText(tokenizer)
    assert text_of.byte_level
    sample = random.Random(7)
    for _ in range(200):
        ids = [sample.randrange(len(tokenizer)) for _ in range(sample.randrange(1, 12))]
        assert "".join(_stream(text_of, ids)) == tokenizer.decode(ids, skip_special_tokens=True), ids


def test_special_tokens_are_not_text() -> None:
    im_end = TOKENIZER.convert_tokens_to_ids("<|im_end|>")
    for text_of in (BYTES, CONTEXT):
        assert "".join(_stream(text_of, [*TOKENIZER.encode("a", add_special_tokens=False), im_end])) == "a"
