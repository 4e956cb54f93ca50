"""`usage` in `response.done`, exact to the token, through the real server: each response's usage must equal
the one counted again without the runtime (`tests.support.usage`) — input split into audio positions and
text, cached tokens (those of the conversation's resident cache) split the same way, output tokens — and
the SDK hands it over typed.

The speech goes in as a 16 kHz WAV stream, so that the server's samples are exactly the file's and
the reference can reproduce the replies.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from aural.protocols.models import Usage
from aural.runtime.engine.base import AudioPart, Message
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.sdk import connect as sdk_connect
from tests.support.client import RawClient, add_text, create_response, read_response
from tests.support.usage import ReferenceConversation

from .conftest import MODEL, SAMPLE_WAV, Connect, Endpoint, open_session
from .test_audio_formats import append, declare

pytestmark = pytest.mark.model

MAX_TOKENS = 12
TOKENS_PER_SECOND = 25  # Qwen2-Audio's encoder: one <|AUDIO|> position per 40 ms


async def respond(client: RawClient) -> dict[str, Any]:
    await create_response(client, MAX_TOKENS)
    usage: dict[str, Any] = (await read_response(client)).response["usage"]
    return usage


async def test_audio_then_text_then_an_edit(
    connect: Connect, engine: TransformersEngine, speech_samples: npt.NDArray[np.float32]
) -> None:
    client = await open_session(connect)
    reference = ReferenceConversation(engine)

    await declare(client, {"type": "audio/wav"})
    await append(client, SAMPLE_WAV.read_bytes(), chunk=4096)
    await client.send({"type": "input_audio_buffer.commit"})
    audio_id = (await client.expect("input_audio_buffer.committed"))["item_id"]
    reference.messages.append(Message("user", (AudioPart(f"{audio_id}/0", speech_samples),)))
    first = await respond(client)
    assert first == reference.respond("a1", MAX_TOKENS)
    seconds = len(speech_samples) / 16000
    assert abs(first["input_token_details"]["audio_tokens"] - TOKENS_PER_SECOND * seconds) <= 1
    assert first["input_token_details"]["cached_tokens"] == 0

    await add_text(client, "And what does that mean?")
    text_id = (await client.expect("conversation.item.added"))["item"]["id"]
    reference.messages.append(Message("user", ("And what does that mean?",)))
    second = await respond(client)
    assert second == reference.respond("a2", MAX_TOKENS)
    cached = second["input_token_details"]["cached_tokens_details"]
    assert cached["audio_tokens"] == first["input_token_details"]["audio_tokens"] > 0

    await client.send({"type": "conversation.item.delete", "item_id": text_id})
    await client.expect("conversation.item.deleted")
    del reference.messages[2]
    third = await respond(client)
    assert third == reference.respond("a3", MAX_TOKENS)
    assert 0 < third["input_token_details"]["cached_tokens"] < second["input_tokens"]


async def test_the_sdk_hands_over_usage_typed(server: Endpoint, engine: TransformersEngine) -> None:
    reference = ReferenceConversation(engine, [Message("user", ("Hello there.",))])
    async with sdk_connect(server.realtime_url, model=MODEL) as conn:
        await conn.add_message("user", text="Hello there.")
        stream = conn.create_response(max_output_tokens=MAX_TOKENS)
        await stream.collect()
    assert stream.response is not None and isinstance(stream.response.usage, Usage)
    assert stream.response.usage.model_dump() == reference.respond("a1", MAX_TOKENS)
