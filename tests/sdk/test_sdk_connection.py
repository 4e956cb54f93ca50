"""`Connection` against a scripted fake server: handshake, typed events, audio and messages."""

from __future__ import annotations

import base64
import math
import socket
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pytest

from aural.protocols import ServerEvent
from aural.protocols.client_events import InputAudioBufferCommit, ResponseCancel
from aural.protocols.models import (
    AudioConfig,
    AudioInputConfig,
    PcmFormat,
    PcmuFormat,
    RateLimit,
    SessionConfig,
)
from aural.protocols.server_events import (
    InputAudioBufferCommitted,
    RateLimitsUpdated,
    SessionCreated,
    SessionUpdated,
)
from aural.sdk import AuralConnectionError, AuralProtocolError, connect, to_pcm16
from aural.sdk.connection import APPEND_CHUNK_BYTES

if TYPE_CHECKING:
    from tests.sdk.conftest import AudioWriter, FakeServer


def appended(server: FakeServer) -> list[bytes]:
    """The decoded audio of each `input_audio_buffer.append` the server received."""
    return [base64.b64decode(event["audio"]) for event in server.of_type("input_audio_buffer.append")]


def session_with_format(fmt: PcmFormat | PcmuFormat) -> SessionCreated:
    return SessionCreated(session=SessionConfig(audio=AudioConfig(input=AudioInputConfig(format=fmt))))


# --- handshake -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [("", "/v1/realtime?model=tiny"), ("?model=other&x=1", "/v1/realtime?x=1&model=tiny")],
)
async def test_connect_sends_the_model_and_the_api_key(server: FakeServer, suffix: str, expected: str) -> None:
    async with connect(server.url + suffix, model="tiny", api_key="sk-test"):
        pass
    await server.finished()
    assert server.path == expected
    assert server.headers["authorization"] == "Bearer sk-test"


async def test_no_model_and_no_key_send_neither(server: FakeServer) -> None:
    conn = await connect(server.url)
    await conn.close()
    await server.finished()
    assert server.path == "/v1/realtime"
    assert "authorization" not in server.headers


async def test_connect_failure_raises_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(AuralConnectionError, match="could not connect"):
        async with connect(f"ws://127.0.0.1:{port}/v1/realtime"):
            pass


# --- receiving -------------------------------------------------------------------------------------


async def test_events_are_typed_and_unknown_types_skipped(server: FakeServer) -> None:
    created = SessionCreated(session=SessionConfig(model="tiny"))
    limits = RateLimitsUpdated(rate_limits=[RateLimit(name="tokens", limit=100, remaining=42, reset_seconds=1)])
    committed = InputAudioBufferCommitted(item_id="item_1", previous_item_id="item_0")
    unknown = '{"type": "aural.stats", "event_id": "event_x", "tokens_per_second": 30}'
    server.greeting = [created, unknown, limits, committed]
    server.close_code = 1000
    async with connect(server.url) as conn:
        events: list[ServerEvent] = [event async for event in conn]
    assert events == [created, limits, committed]
    assert [type(event) for event in events] == [SessionCreated, RateLimitsUpdated, InputAudioBufferCommitted]


async def test_session_follows_created_and_updated(server: FakeServer) -> None:
    server.greeting = [
        SessionCreated(session=SessionConfig(model="tiny")),
        SessionUpdated(session=SessionConfig(model="tiny", instructions="Be brief.")),
    ]
    async with connect(server.url) as conn:
        assert conn.session is None
        await conn.recv()
        assert conn.session is not None
        assert (conn.session.model, conn.session.instructions) == ("tiny", None)
        await conn.recv()
        assert conn.session.instructions == "Be brief."


@pytest.mark.parametrize("code", [1000, 1011])
async def test_recv_on_a_closed_connection_raises(server: FakeServer, code: int) -> None:
    server.close_code = code
    async with connect(server.url) as conn:
        with pytest.raises(AuralConnectionError):
            await conn.recv()


async def test_iteration_raises_when_the_connection_breaks(server: FakeServer) -> None:
    server.greeting = [InputAudioBufferCommitted(item_id="item_1")]
    server.close_code = 1011
    async with connect(server.url) as conn:
        seen = []
        with pytest.raises(AuralConnectionError, match="unexpectedly"):
            async for event in conn:
                seen.append(event)
    assert len(seen) == 1


async def test_invalid_event_raises_protocol_error(server: FakeServer) -> None:
    server.greeting = ['{"type": "response.output_text.delta", "event_id": "event_1"}', "not json"]
    async with connect(server.url) as conn:
        with pytest.raises(AuralProtocolError, match=r"response\.output_text\.delta"):
            await conn.recv()
        with pytest.raises(AuralProtocolError, match="JSON"):
            await conn.recv()


# --- sending ---------------------------------------------------------------------------------------


async def test_send_gives_events_an_id_unless_they_have_one(server: FakeServer) -> None:
    commit = InputAudioBufferCommit()
    async with connect(server.url) as conn:
        await conn.send(commit)
        await conn.send(ResponseCancel(event_id="evt_mine", response_id="resp_1"))
    await server.finished()
    assert commit.event_id is not None and commit.event_id.startswith("evt_")
    assert server.received == [
        {"type": "input_audio_buffer.commit", "event_id": commit.event_id},
        {"type": "response.cancel", "event_id": "evt_mine", "response_id": "resp_1"},
    ]


async def test_send_on_a_closed_connection_raises(server: FakeServer) -> None:
    server.close_code = 1000
    async with connect(server.url) as conn:
        with pytest.raises(AuralConnectionError):
            await conn.recv()
        with pytest.raises(AuralConnectionError, match=r"input_audio_buffer\.commit"):
            await conn.commit()


async def test_update_session_sends_only_the_given_fields(server: FakeServer) -> None:
    async with connect(server.url) as conn:
        await conn.update_session(instructions="Be brief.", max_output_tokens=50)
        with pytest.raises(TypeError, match="instrucions"):
            await conn.update_session(instrucions="typo")
        with pytest.raises(ValueError, match="temperature"):
            await conn.update_session(temperature=5.0)
    await server.finished()
    [update] = server.of_type("session.update")
    assert update["session"] == {"type": "realtime", "instructions": "Be brief.", "max_output_tokens": 50}


async def test_commit_and_clear(server: FakeServer) -> None:
    async with connect(server.url) as conn:
        await conn.commit()
        await conn.clear_audio()
    await server.finished()
    assert [event["type"] for event in server.received] == [
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
    ]


# --- audio -----------------------------------------------------------------------------------------


async def test_large_appends_are_chunked(server: FakeServer) -> None:
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, 10 * 24000).astype(np.float32)
    async with connect(server.url) as conn:
        await conn.append_audio(samples, sample_rate=24000)
    await server.finished()
    chunks = appended(server)
    assert len(chunks) == math.ceil(10 * 24000 * 2 / APPEND_CHUNK_BYTES) == 3
    assert all(len(event["audio"]) <= 256 * 1024 for event in server.of_type("input_audio_buffer.append"))
    assert b"".join(chunks) == to_pcm16(samples, 24000)


@pytest.mark.parametrize(
    ("audio", "sample_rate", "samples_out"),
    [
        (np.zeros(16000, dtype=np.float32), 16000, 24000),
        (np.zeros(48000, dtype=np.int16), 48000, 24000),
        (np.zeros((4410, 2), dtype=np.float64), 44100, 2400),
        (bytes(2 * 8000), 8000, 24000),
        (b"\x01\x02\x03", None, None),
    ],
)
async def test_append_audio_takes_arrays_and_bytes(
    server: FakeServer, audio: Any, sample_rate: int | None, samples_out: int | None
) -> None:
    async with connect(server.url) as conn:
        await conn.append_audio(audio, sample_rate=sample_rate)
    await server.finished()
    [data] = appended(server)
    assert data == (audio if samples_out is None else bytes(2 * samples_out))


async def test_append_audio_takes_a_file_path(server: FakeServer, write_audio: AudioWriter) -> None:
    tone = np.round(8000 * np.sin(2 * np.pi * 440 * np.arange(24000) / 16000)).astype(np.int16)
    path = write_audio("tone.wav", "pcm_s16le", tone[:, None], 16000)
    async with connect(server.url) as conn:
        await conn.append_audio(path)
    await server.finished()
    assert b"".join(appended(server)) == to_pcm16(tone, 16000)


async def test_append_audio_follows_the_session_pcm_rate(server: FakeServer) -> None:
    server.greeting = [session_with_format(PcmFormat(rate=16000))]
    async with connect(server.url) as conn:
        await conn.recv()
        await conn.append_audio(np.zeros(48000, dtype=np.float32), sample_rate=48000)
    await server.finished()
    assert b"".join(appended(server)) == bytes(2 * 16000)


@pytest.mark.parametrize(("channels", "encoding"), [(2, None), (None, "float32"), (2, "float32")])
async def test_append_audio_writes_the_session_channels_and_encoding(
    server: FakeServer, channels: Literal[2] | None, encoding: Literal["float32"] | None
) -> None:
    server.greeting = [session_with_format(PcmFormat(rate=16000, channels=channels, encoding=encoding))]
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    stereo_tone = np.stack([tone, tone], axis=1)
    async with connect(server.url) as conn:
        await conn.recv()
        await conn.append_audio(tone, sample_rate=16000)
        await conn.append_audio(stereo_tone, sample_rate=16000)  # downmixed, then written to both channels
    await server.finished()
    dtype = "<f4" if encoding == "float32" else "<i2"
    for sent in appended(server):
        frames = np.frombuffer(sent, dtype=dtype).reshape(-1, channels or 1)
        assert frames.shape[0] == 16000
        assert (frames == frames[:, :1]).all(), "every channel holds the signal"
        expected = tone if encoding == "float32" else np.frombuffer(to_pcm16(tone, 16000, rate=16000), "<i2")
        np.testing.assert_allclose(frames[:, 0], expected, atol=1e-6)


async def test_raw_bytes_pass_through_in_any_pcm_format(server: FakeServer) -> None:
    server.greeting = [session_with_format(PcmFormat(channels=2, encoding="float32"))]
    async with connect(server.url) as conn:
        await conn.recv()
        await conn.append_audio(b"\x01\x02\x03\x04" * 100)
    await server.finished()
    assert appended(server) == [b"\x01\x02\x03\x04" * 100]


async def test_g711_sessions_take_raw_bytes_only(server: FakeServer) -> None:
    server.greeting = [session_with_format(PcmuFormat())]
    async with connect(server.url) as conn:
        await conn.recv()
        with pytest.raises(ValueError, match="audio/pcmu"):
            await conn.append_audio(np.zeros(800, dtype=np.float32), sample_rate=8000)
        await conn.append_audio(b"\xff" * 800)
    await server.finished()
    assert appended(server) == [b"\xff" * 800]


# --- messages --------------------------------------------------------------------------------------


async def test_user_message_holds_audio_then_text(server: FakeServer) -> None:
    async with connect(server.url) as conn:
        await conn.add_message("user", text="What is said?", audio=np.zeros(800, np.int16), sample_rate=8000)
    await server.finished()
    [create] = server.of_type("conversation.item.create")
    item = create["item"]
    assert (item["type"], item["role"]) == ("message", "user")
    assert [part["type"] for part in item["content"]] == ["input_audio", "input_text"]
    assert base64.b64decode(item["content"][0]["audio"]) == bytes(2 * 2400)
    assert item["content"][1]["text"] == "What is said?"


@pytest.mark.parametrize(("role", "part"), [("assistant", "output_text"), ("system", "input_text")])
async def test_text_messages(server: FakeServer, role: str, part: str) -> None:
    async with connect(server.url) as conn:
        await conn.add_message(role, text="Hello.")
    await server.finished()
    [create] = server.of_type("conversation.item.create")
    assert create["item"]["role"] == role
    assert create["item"]["content"] == [{"type": part, "text": "Hello."}]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"role": "user"},
        {"role": "assistant", "audio": b"\x00\x00"},
        {"role": "narrator", "text": "Once upon a time"},
    ],
)
async def test_bad_messages_are_refused_before_sending(server: FakeServer, kwargs: dict[str, Any]) -> None:
    async with connect(server.url) as conn:
        with pytest.raises(ValueError):
            await conn.add_message(**kwargs)
    await server.finished()
    assert server.received == []
