"""Compressed input through the real server: a WebM/Opus stream appended in small chunks is decoded as it
comes and answered like the same speech sent as GA PCM; a corrupt stream gets an `error` event and the
conversation goes on.

`session.updated` echoes the extension format, which openai's GA types do not know: the client's checks
validate that field against Aural's own format model (`validate_openai`).
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from tests.support.client import Event, RawClient, assert_consistent, assert_error, create_response, read_response
from tests.support.codecs import STREAMS, encode
from tests.support.speech import speak

from .conftest import WIRE_RATE, Connect, open_session

pytestmark = pytest.mark.model

WEBM = STREAMS["webm-opus"]
TEXT = "Hello, how are you?"
CHUNK_BYTES = 300  # about 20 ms of this Opus stream


def speech(rate: int) -> np.ndarray:
    return (np.clip(speak(TEXT, rate=rate), -1, 1) * 32767).astype(np.int16)


async def declare(client: RawClient, fmt: Event) -> None:
    """session.update to an input format; reads its session.updated, which echoes the format."""
    await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {"format": fmt}}}})
    event = await client.expect("session.updated")
    assert event["session"]["audio"]["input"]["format"] == fmt


async def append(client: RawClient, data: bytes, chunk: int = CHUNK_BYTES) -> None:
    for offset in range(0, len(data), chunk):
        piece = base64.b64encode(data[offset : offset + chunk]).decode("ascii")
        await client.send({"type": "input_audio_buffer.append", "audio": piece})


async def commit_and_answer(client: RawClient) -> int:
    """Commit the buffer, expect the user item, run a response; returns its input token count."""
    await client.send({"type": "input_audio_buffer.commit"})
    committed = await client.expect("input_audio_buffer.committed")
    added = await client.expect("conversation.item.added")
    assert added["item"]["id"] == committed["item_id"] and added["item"]["role"] == "user"
    await client.expect("conversation.item.done")
    await create_response(client)
    turn = await read_response(client)
    assert_consistent(turn)
    tokens: int = turn.response["usage"]["input_tokens"]
    return tokens


async def test_webm_opus_in_small_chunks_is_answered_like_pcm(connect: Connect) -> None:
    webm = await open_session(connect)
    await declare(webm, {"type": "audio/webm"})
    await append(webm, encode(speech(WEBM.rate), WEBM))
    streamed_tokens = await commit_and_answer(webm)

    pcm = await open_session(connect)
    await append(pcm, speech(WIRE_RATE).tobytes(), chunk=960)
    assert streamed_tokens == await commit_and_answer(pcm), "the same speech, as long once decoded"


async def test_a_corrupt_stream_is_an_error_and_the_conversation_goes_on(connect: Connect) -> None:
    client = await open_session(connect)
    await declare(client, {"type": "audio/webm"})
    ogg = encode(speech(48000), STREAMS["ogg-opus"])
    await append(client, ogg[:CHUNK_BYTES])
    assert_error(await client.expect("error"), "invalid_audio", param="audio")
    await append(client, encode(speech(WEBM.rate), WEBM))  # a new stream, from its header
    assert await commit_and_answer(client) > 0
