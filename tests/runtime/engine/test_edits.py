"""Edited history against transformers' own `generate()`: cut replies, truncated and replaced audio.

The session cuts an assistant item to the text the client received (barge-in) or to what
`conversation.item.truncate` leaves; a user audio can be truncated, and an item deleted and created
again under the same id. The next reply must equal the reference over the edited history, where a
cut reply is the ids behind the text it kept, computed here from the reply's own bytes.
"""

from __future__ import annotations

import pytest

from aural.runtime.engine.base import AudioPart, Message, SamplingParams, TextDelta
from tests.support.engines import run_reply, tone
from tests.support.reference import reference_generate

pytestmark = pytest.mark.model

_QUESTION = Message("user", (AudioPart("u0/0", tone(2, 1.0)), "Say something."), "u0")
_NEXT = Message("user", ("And now?",), "u1")


def _char_starts(ids: list[int]) -> list[tuple[int, int]]:
    """(index, length) of every valid multi-byte UTF-8 character in a byte-level reply."""
    found = []
    for index, lead in enumerate(ids):
        length = 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0
        if length and index + length <= len(ids):
            try:
                bytes(ids[index : index + length]).decode("utf-8")
            except (UnicodeDecodeError, ValueError):
                continue
            found.append((index, length))
    return found


async def _next_turn(session, history: list[Message], replies: dict[str, list[int]]):
    conversation = [*history, _NEXT]
    _, done = await run_reply(session, conversation, "r1", 10)
    assert session.generated["r1"] == reference_generate(session.engine, conversation, replies, 10)
    return done


async def test_barge_in_keeps_the_ids_of_the_text_the_client_received(engine):
    session = await engine.open_session()
    generation = session.generate([_QUESTION], "r0", SamplingParams(max_tokens=200))
    sent: list[TextDelta] = []
    barged_in = False
    async for event in generation:
        if isinstance(event, TextDelta) and not barged_in:
            sent.append(event)
            barged_in = sum(len(d.token_ids) for d in sent) >= 4
            if barged_in:
                generation.cancel()  # what arrives from here on never reaches the client
    kept = [t for d in sent for t in d.token_ids]
    produced = len(session.generated["r0"])
    cut = Message("assistant", ("".join(d.text for d in sent),), "r0")
    done = await _next_turn(session, [_QUESTION, cut], {"r0": kept})
    _assert_kept(session, cut, kept, produced, done.usage.cached_tokens)
    await session.close()


def _assert_kept(session, cut: Message, kept: list[int], produced: int, cached: int) -> None:
    """The cut reply is rendered as the kept ids, and the cache was reused through them (the last id
    produced was never fed to the model)."""
    chat_format = session.engine.chat_format
    asked = len(chat_format.render([_QUESTION], session.generated.get).ids)
    said = chat_format.render([_QUESTION, cut], session.generated.get).ids
    prompt = [chat_format.im_start, *chat_format.encode("assistant\n")]
    assert said[asked:] == [*kept, chat_format.im_end, *chat_format.encode("\n"), *prompt]
    assert cached == asked + min(len(kept), produced - 1)


@pytest.mark.parametrize("where", ["token boundary", "inside a character", "nowhere"])
async def test_a_cut_reply_keeps_the_ids_of_its_text(engine, where):
    """A sampled reply (the tiny model's greedy ones hold no valid multi-byte character) is cut, then
    the next turn is greedy."""
    session = await engine.open_session()
    sampling = {"temperature": 1.0, "seed": 2}
    await run_reply(session, [_QUESTION], "r0", 40, **sampling)
    ids = session.generated["r0"]
    chars = _char_starts(ids)
    assert chars, "the sampled reply must hold a multi-byte character"
    if where == "token boundary":
        keep = next(i for i in range(len(ids) // 2, len(ids)) if ids[i - 1] < 0x80 and ids[i] < 0x80)
    elif where == "inside a character":  # the reply stops in the middle of a character the client never got
        keep, length = chars[-1]
        await run_reply(session, [_QUESTION], "r0", keep + length - 1, **sampling)
        assert session.generated["r0"] == ids[: keep + length - 1]
    else:
        keep = len(ids)
    produced = len(session.generated["r0"])
    text = engine.tokenizer.decode(ids[:keep], skip_special_tokens=True)
    cut = Message("assistant", (text,), "r0")
    done = await _next_turn(session, [_QUESTION, cut], {"r0": ids[:keep]})
    _assert_kept(session, cut, ids[:keep], produced, done.usage.cached_tokens)
    await session.close()


async def test_a_truncated_user_audio_is_encoded_again(engine):
    session = await engine.open_session()
    await run_reply(session, [_QUESTION], "r0", 8)
    reply = Message("assistant", (engine.tokenizer.decode(session.generated["r0"]),), "r0")
    audio = _QUESTION.parts[0]
    assert isinstance(audio, AudioPart)
    truncated = Message("user", (AudioPart(audio.key, audio.samples[:10400]), *_QUESTION.parts[1:]), "u0")
    done = await _next_turn(session, [truncated, reply], {"r0": session.generated["r0"]})
    rendered = engine.chat_format.render([truncated, reply, _NEXT], session.generated.get)
    assert done.usage.cached_tokens == rendered.clips[0].start, "the cache is reused up to the audio, not into it"
    await session.close()


async def test_an_item_deleted_and_created_again_under_its_id_gets_its_new_audio(engine):
    session = await engine.open_session()
    await run_reply(session, [_QUESTION], "r0", 8)
    again = Message("user", (AudioPart("u0/0", tone(5, 1.5)), "Say something."), "u0")
    _, done = await run_reply(session, [again], "r1", 10)
    assert session.generated["r1"] == reference_generate(engine, [again], {}, 10)
    assert done.usage.cached_tokens == engine.chat_format.render([again], session.generated.get).clips[0].start
    await session.close()
