"""The ingest stage: input audio decoded in order on a thread of its own, so that no client holds the event loop.

The loop test sends one connection a long Ogg/Opus blob (500 s of audio, made here with PyAV) and, while
it decodes, measures how late the loop wakes up and how long another connection's events and `/healthz`
take to answer. Before the ingest stage, such a blob held every connection for its whole decode.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
from fractions import Fraction

import av
import numpy as np
import pytest

from aural.protocols import client_events as ce
from aural.protocols.models import PcmFormat, StreamFormat
from aural.runtime.audio.decoders import make_decoder
from aural.runtime.errors import AudioError
from aural.runtime.server.ingest import Ingest
from aural.runtime.session.commands import DecodeAudio, DecodeClips, EndAudio
from aural.runtime.session.inputs import AudioDecoded, AudioEnded, ClipsDecoded
from tests.support.client import RawClient, b64
from tests.support.fake_engine import CAPABILITIES, FakeEngine

from .conftest import Serve

OGG = StreamFormat(type="audio/ogg")
FLAC = StreamFormat(type="audio/flac")
COMMIT = ce.InputAudioBufferCommit()


def long_ogg(repeats: int) -> bytes:
    """5 s of noise encoded once with libopus, muxed `repeats` times into one Ogg stream (only the muxing
    repeats: a long stream is cheap to make, and costs as much to decode as any other)."""
    rate = 48000
    pcm = (np.random.default_rng(0).standard_normal(5 * rate) * 3000).astype(np.int16)
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = rate, "mono", "s16"
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    payloads = [bytes(packet) for packet in [*encoder.encode(frame), *encoder.encode(None)]]
    out = io.BytesIO()
    with av.open(out, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=rate, layout="mono")
        for index in range(repeats * len(payloads)):
            packet = av.Packet(payloads[index % len(payloads)])
            packet.pts = packet.dts = index * 960  # 20 ms frames
            packet.time_base, packet.stream = Fraction(1, rate), stream
            container.mux(packet)
    return out.getvalue()


def silent_flac(seconds: int) -> bytes:
    """`seconds` of silence as 16 kHz FLAC: 20 minutes make some 220 KB (a compression bomb)."""
    rate, out = 16000, io.BytesIO()
    block = np.zeros((1, 10 * rate), dtype=np.int16)
    with av.open(out, "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        for index in range(seconds // 10):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, index * block.shape[1]
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def pcm16(seconds: float) -> bytes:
    t = np.arange(int(seconds * 24000)) / 24000
    return (np.sin(2 * np.pi * 300 * t) * 8000).astype("<i2").tobytes()


def test_appends_decode_in_order_and_end_with_the_stream() -> None:
    ingest, data = Ingest(CAPABILITIES.check_schema), pcm16(1.0)
    parts = [ingest.answer(DecodeAudio(data[i : i + 999], PcmFormat(), None)) for i in range(0, len(data), 999)]
    assert all(isinstance(part, AudioDecoded) and part.error is None for part in parts)
    end = ingest.answer(EndAudio(COMMIT))
    assert isinstance(end, AudioEnded) and end.error is None and end.resume is COMMIT
    whole = make_decoder(PcmFormat())
    expected = np.concatenate([whole.feed(data), whole.flush()])
    got = np.concatenate([*(part.samples for part in parts if isinstance(part, AudioDecoded)), end.samples])
    np.testing.assert_array_equal(got, expected)


def test_a_stream_that_does_not_decode_is_dropped_and_the_next_bytes_start_a_new_one() -> None:
    ingest, ogg = Ingest(CAPABILITIES.check_schema), long_ogg(1)
    bad = ingest.answer(DecodeAudio(b"RIFF" + bytes(60), OGG, "evt_bad"))
    assert isinstance(bad, AudioDecoded) and isinstance(bad.error, AudioError) and bad.event_id == "evt_bad"
    good = ingest.answer(DecodeAudio(ogg, OGG, None))
    end = ingest.answer(EndAudio(COMMIT))
    assert isinstance(good, AudioDecoded) and good.error is None
    assert isinstance(end, AudioEnded) and end.error is None
    assert good.samples.size + end.samples.size == pytest.approx(5 * 16000, abs=960)


def test_clips_decode_each_as_a_stream_of_its_own() -> None:
    ingest, ogg = Ingest(CAPABILITIES.check_schema), long_ogg(1)
    answer = ingest.answer(DecodeClips((ogg, b"OggS" + bytes(100)), OGG, COMMIT))
    assert isinstance(answer, ClipsDecoded) and answer.resume is COMMIT
    samples, broken = answer.clips[ogg], answer.clips[b"OggS" + bytes(100)]
    assert not isinstance(samples, AudioError) and samples.size == pytest.approx(5 * 16000, abs=960)
    assert isinstance(broken, AudioError) and "audio/ogg" in broken.message


def test_a_compression_bomb_stops_at_the_bound_not_at_its_end() -> None:
    bomb, bound = silent_flac(20 * 60), 60 * 16000
    assert len(bomb) < 300_000
    ingest = Ingest(CAPABILITIES.check_schema, bound)
    (clip,) = ingest.answer(DecodeClips((bomb,), FLAC, COMMIT)).clips.values()  # type: ignore[union-attr]
    assert isinstance(clip, AudioError) and "more than 60 s" in clip.message
    before = set(threading.enumerate())
    fed = ingest.answer(DecodeAudio(bomb, FLAC, None))
    end = ingest.answer(EndAudio(COMMIT))
    assert isinstance(fed, AudioDecoded) and isinstance(end, AudioEnded)
    assert fed.samples.size + end.samples.size <= bound
    assert isinstance(fed.error or end.error, AudioError)
    assert not [thread for thread in threading.enumerate() if thread not in before and thread.is_alive()]


async def test_a_compression_bomb_gets_an_error_and_the_conversation_goes_on(serve: Serve, fake: FakeEngine) -> None:
    http = await serve()
    client = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    await client.expect("session.created")
    await client.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"input": {"format": {"type": "audio/flac"}}}},
        }
    )
    assert json.loads(await client.receive_frame())["type"] == "session.updated"
    bomb = b64(silent_flac(20 * 60))  # decodes to 20 minutes, past the 15-minute buffer
    item = {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": bomb}]}
    await client.send({"type": "conversation.item.create", "event_id": "bomb", "item": item})
    error = json.loads(await client.receive_frame())
    assert error["type"] == "error" and error["error"]["event_id"] == "bomb"
    assert "more than 900 s" in error["error"]["message"]
    await client.send({"type": "input_audio_buffer.append", "audio": bomb})
    await client.send({"type": "input_audio_buffer.commit", "event_id": "commit"})
    error = json.loads(await client.receive_frame())
    assert error["type"] == "error" and error["error"]["event_id"] == "commit"
    await client.send({"type": "conversation.item.retrieve", "item_id": "none"})
    assert json.loads(await client.receive_frame())["error"]["code"] == "item_not_found"  # nothing was committed
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {**item, "content": [{"type": "input_audio", "audio": b64(silent_flac(10))}]},
        }
    )
    assert json.loads(await client.receive_frame())["type"] == "conversation.item.added"


async def test_close_stops_the_decoder_thread_of_an_open_stream() -> None:
    before = set(threading.enumerate())
    ingest = Ingest(CAPABILITIES.check_schema)
    await ingest.run(DecodeAudio(long_ogg(1)[:2000], OGG, None))
    decoders = [thread for thread in threading.enumerate() if thread not in before and thread.name.startswith("decode")]
    await ingest.close()
    assert decoders and not any(thread.is_alive() for thread in decoders)


async def test_a_long_blob_decodes_while_other_connections_are_served(serve: Serve, fake: FakeEngine) -> None:
    blob = long_ogg(100)  # 500 s of Opus, about 3.7 MB
    http = await serve()
    sender = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    other = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    for client in (sender, other):
        await client.expect("session.created")
    update = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/ogg"}}}}
    await sender.send({"type": "session.update", "session": update})
    assert json.loads(await sender.receive_frame())["type"] == "session.updated"  # openai does not know the format

    finished = asyncio.Event()
    answers = 0

    async def ask_elsewhere() -> None:
        nonlocal answers
        while not finished.is_set():
            async with http.get("/healthz") as reply:
                assert (await reply.json())["status"] == "ok"
            await other.send({"type": "conversation.item.retrieve", "item_id": "item_nope"})
            await other.expect("error")
            answers += 1
            await asyncio.sleep(0.01)

    background = asyncio.create_task(ask_elsewhere())
    item = {"type": "message", "role": "user", "content": [{"type": "input_audio", "audio": b64(blob)}]}
    await sender.send({"type": "conversation.item.create", "item": item})
    added = await sender.expect("conversation.item.added")
    finished.set()
    await background

    assert added["item"]["content"][0]["type"] == "input_audio"
    # A decode holding the loop would let at most the round trip already under way through.
    assert answers >= 5, "other requests were answered while it decoded"
