"""The chat format's rules for edited history, with a tokenizer whose tokens span several characters."""

from __future__ import annotations

import unicodedata

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from transformers import Qwen2Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

from aural.runtime.engine.base import AudioPart, Message
from aural.runtime.engine.qwen2_audio.chat_format import CLIP_SAMPLES, QwenAudioChatFormat, split_clips
from aural.runtime.engine.qwen2_audio.presets import SPECIAL_TOKENS

pytestmark = pytest.mark.model

NFC_TEXT = st.text(max_size=24).filter(
    lambda text: all(unicodedata.is_normalized("NFC", text[:cut]) for cut in range(len(text) + 1))
)
"""Text the tokenizer keeps as it is: it normalizes to NFC (U+FA70, say, comes back as U+4E26)."""
_MERGES = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o"), ("w", "o"), ("wo", "r"), ("l", "d"), ("wor", "ld")]


@pytest.fixture(scope="module")
def chat_format() -> QwenAudioChatFormat:
    """Byte-level BPE with a few merges: `hello` and `world` are one token each."""
    symbols = bytes_to_unicode()
    vocab = {symbols[b]: b for b in range(256)} | {a + b: 256 + i for i, (a, b) in enumerate(_MERGES)}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=_MERGES, unk_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    return QwenAudioChatFormat(tokenizer)


def _ids(chat_format: QwenAudioChatFormat, text: str) -> list[int]:
    return list(chat_format.encode(text))


def test_a_reply_whose_text_is_whole_keeps_its_ids(chat_format):
    ids = [*_ids(chat_format, "hello"), chat_format.im_start, *_ids(chat_format, " world")]  # the text skips specials
    assert chat_format.follow_text(ids, "hello world") == tuple(ids)


@pytest.mark.parametrize(
    ("text", "kept", "rest"),
    [
        ("hello wor", 2, "wor"),  # inside the token `world`
        ("hel", 0, "hel"),  # inside the first token
        ("hello ", 2, ""),  # at a token boundary
        ("hello world, caf", 8, ""),  # before the bytes of `é`, which the client never got
    ],
)
def test_a_cut_reply_keeps_the_ids_of_the_text_it_holds(chat_format, text, kept, rest):
    ids = _ids(chat_format, "hello world, café")
    assert chat_format.follow_text(ids, text) == (*ids[:kept], *chat_format.encode(rest))


def test_a_reply_stopped_inside_a_character_drops_its_bytes(chat_format):
    ids = _ids(chat_format, "café")[:-1]
    assert chat_format.follow_text(ids, "caf") == tuple(ids[:3])


@given(NFC_TEXT, st.integers(min_value=0, max_value=80), st.integers(min_value=0, max_value=24))
def test_the_kept_ids_are_the_longest_prefix_whose_text_the_reply_holds(chat_format, text, produced, cut):
    """Against the rule read literally: try every prefix of the ids (the engine may have stopped
    anywhere, even inside a character)."""
    ids = _ids(chat_format, text)[:produced]
    said = text[:cut]

    def decode(prefix: list[int]) -> str:
        return chat_format._tokenizer.decode(prefix, skip_special_tokens=True)

    longest = max(k for k in range(len(ids) + 1) if said.startswith(decode(ids[:k])))
    kept = chat_format.follow_text(ids, said)
    assert kept == (*ids[:longest], *chat_format.encode(said[len(decode(ids[:longest])) :]))
    assert decode(list(kept)) == said


def test_clips_are_keyed_by_index_and_length():
    samples = np.zeros(2 * CLIP_SAMPLES + 16000, np.float32)
    keys = [clip.key for clip in split_clips(AudioPart("u/0", samples))]
    assert keys == [f"u/0#0:{CLIP_SAMPLES}", f"u/0#1:{CLIP_SAMPLES}", "u/0#2:16000"]
    partial = [clip.key for clip in split_clips(AudioPart("u/0", samples[: CLIP_SAMPLES + 8000]))]
    assert partial[0] == keys[0] and partial[1] != keys[1]


def test_a_partial_message_shares_the_rendering_of_its_completed_clips(chat_format):
    samples = np.zeros(CLIP_SAMPLES + 16000, np.float32)
    partial = chat_format.render([Message("user", (AudioPart("u/0", samples[:CLIP_SAMPLES]),), "u")], {}.get)
    whole = chat_format.render([Message("user", (AudioPart("u/0", samples),), "u")], {}.get)
    first = whole.clips[0]
    assert partial.keys[: first.start + first.length + 1] == whole.keys[: first.start + first.length + 1]
