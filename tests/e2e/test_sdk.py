"""Aural's own SDK against the real runtime: voice chat, audio analysis and text turns in one conversation."""

from __future__ import annotations

import asyncio

import numpy as np
import numpy.typing as npt
import pytest

from aural.protocols import ServerEvent
from aural.protocols.models import MessageItem, OutputText
from aural.protocols.server_events import (
    ConversationItemAdded,
    InputAudioBufferCommitted,
    ResponseOutputTextDelta,
    ResponseOutputTextDone,
)
from aural.sdk import Connection, ResponseStream
from tests.support.client import RECV_TIMEOUT

from .conftest import SAMPLE_WAV, SdkConnect

pytestmark = pytest.mark.model


def record_reads(conn: Connection, monkeypatch: pytest.MonkeyPatch) -> list[ServerEvent]:
    """Every event the connection reads, including those a `ResponseStream` keeps to itself."""
    read: list[ServerEvent] = []
    recv = conn.recv

    async def recording_recv() -> ServerEvent:
        event = await recv()
        read.append(event)
        return event

    monkeypatch.setattr(conn, "recv", recording_recv)
    return read


async def respond(conn: Connection, read: list[ServerEvent]) -> tuple[ResponseStream, list[str], str]:
    """Stream one response; returns the stream, its deltas and the text of its `output_text.done`."""
    start = len(read)
    stream = conn.create_response(max_output_tokens=12)
    deltas = [delta async for delta in stream]
    [done] = [e for e in read[start:] if isinstance(e, ResponseOutputTextDone) and e.response_id == stream.response_id]
    return stream, deltas, done.text


def final_text(stream: ResponseStream) -> str:
    assert stream.response is not None
    [item] = stream.response.output
    assert isinstance(item, MessageItem) and item.role == "assistant"
    [part] = item.content
    assert isinstance(part, OutputText)
    return part.text


def cached_tokens(stream: ResponseStream) -> int:
    assert stream.response is not None and stream.response.usage is not None
    return stream.response.usage.input_token_details.cached_tokens


def user_content(passed_on: list[ServerEvent]) -> list[list[str]]:
    """The content types of each user item the server announced."""
    return [
        [part.type for part in event.item.content]
        for event in passed_on
        if isinstance(event, ConversationItemAdded)
        and isinstance(event.item, MessageItem)
        and event.item.role == "user"
    ]


async def test_voice_chat_audio_analysis_and_text_turns(
    sdk_connect: SdkConnect, speech_samples: npt.NDArray[np.float32], monkeypatch: pytest.MonkeyPatch
) -> None:
    passed_on: list[ServerEvent] = []
    async with asyncio.timeout(RECV_TIMEOUT), sdk_connect(on_event=passed_on.append) as conn:
        read = record_reads(conn, monkeypatch)

        await conn.append_audio(SAMPLE_WAV)  # voice chat: a file, committed from the buffer
        await conn.commit()
        turns = [await respond(conn, read)]
        await conn.add_message("user", audio=speech_samples, sample_rate=16000, text="What is said in this clip?")
        turns.append(await respond(conn, read))
        await conn.add_message("user", text="Thank you. Anything else?")
        turns.append(await respond(conn, read))

    for stream, deltas, done_text in turns:
        assert deltas, "the reply streamed text"
        assert "".join(deltas) == stream.text == done_text == final_text(stream)
        own = [e.delta for e in read if isinstance(e, ResponseOutputTextDelta) and e.response_id == stream.response_id]
        assert deltas == own, "the stream yields exactly its own response's deltas"
    streams = [stream for stream, _, _ in turns]
    assert len({stream.response_id for stream in streams}) == 3
    assert [cached_tokens(stream) > 0 for stream in streams] == [False, True, True], "the KV cache stays resident"
    assert user_content(passed_on) == [["input_audio"], ["input_audio", "input_text"], ["input_text"]]
    assert sum(isinstance(event, InputAudioBufferCommitted) for event in passed_on) == 1


async def test_binary_audio_frames_when_the_server_agrees(sdk_connect: SdkConnect) -> None:
    """`binary_audio=True`: the server takes the subprotocol and the same audio arrives as binary frames."""
    async with sdk_connect(binary_audio=True) as conn:
        assert conn.binary_audio
        await conn.append_audio(SAMPLE_WAV)
        await conn.commit()
        committed = await anext(e async for e in conn if isinstance(e, InputAudioBufferCommitted))
        stream = conn.create_response(max_output_tokens=4)
        await stream.collect()
        assert stream.response is not None and stream.response.usage is not None
        assert stream.response.usage.input_token_details.audio_tokens > 0
        assert committed.item_id
