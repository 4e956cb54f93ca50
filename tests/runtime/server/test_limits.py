"""The server keeps its `Limits` against the fake engine: every message out of bounds gets an `error` and the
conversation goes on; what the connection cannot survive closes it with a proper code and a short reason."""

from __future__ import annotations

import json

import pytest
from aiohttp import WSMsgType

from aural.protocols.limits import Limits
from aural.runtime.server.guard import TokenBucket
from tests.support.client import RawClient, add_text, assert_error, assert_turn_works

from .conftest import Connect, Serve

ATTACKS = {
    "JSON 1,000 deep": ("[" * 1000 + "]" * 1000, "nesting_too_deep", None),
    "a lone surrogate": (
        '{"type": "session.update", "session": {"instructions": "\\ud800"}}',
        "invalid_unicode",
        "session.instructions",
    ),
    "temperature 1e-300": (
        json.dumps({"type": "session.update", "session": {"temperature": 1e-300}}),
        "decimal_below_min_value",
        "session.temperature",
    ),
    "100,000 metadata keys": (
        json.dumps({"type": "response.create", "response": {"metadata": {str(i): "" for i in range(100_000)}}}),
        "object_above_max_properties",
        "response.metadata",
    ),
    "a tool of 10,000 properties": (
        json.dumps(
            {
                "type": "session.update",
                "session": {
                    "tools": [
                        {
                            "type": "function",
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {f"p{i}": {"type": "string"} for i in range(10_000)},
                            },
                        }
                    ]
                },
            }
        ),
        "tool_schema_too_large",
        "session.tools.0.parameters",
    ),
    "no output modality": (
        json.dumps({"type": "response.create", "response": {"output_modalities": []}}),
        "empty_array",
        "response.output_modalities",
    ),
}


@pytest.mark.parametrize(("frame", "code", "param"), ATTACKS.values(), ids=ATTACKS.keys())
async def test_an_attack_gets_an_error_and_the_conversation_goes_on(
    connect: Connect, frame: str, code: str, param: str | None
) -> None:
    client = await connect()
    await client.send_frame(frame)
    assert_error(await client.expect("error"), code, param=param)
    await assert_turn_works(client)


async def test_a_message_over_the_rate_is_dropped_with_an_error(connect: Connect) -> None:
    client = await connect(limits=Limits(events_per_second=1e-6, event_burst=3))
    for text in ("one", "two"):
        await add_text(client, text)
        await client.expect("conversation.item.added")
        await client.expect("conversation.item.done")
    await client.send_frame(b"\x00\x01")  # a binary frame counts too
    await client.expect("error")
    await client.send({"type": "input_audio_buffer.clear", "event_id": "evt_over"})
    assert_error(await client.expect("error"), "rate_limit_exceeded")


def test_the_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5  # one token back
    assert [bucket.take() for _ in range(2)] == [True, False]
    now[0] += 100.0  # no more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


async def test_a_message_over_the_size_limit_closes_the_connection_with_1009(serve: Serve) -> None:
    http = await serve(limits=Limits(max_message_bytes=4096))
    ws = await http.ws_connect("/v1/realtime?model=fake")
    assert json.loads((await ws.receive()).data)["type"] == "session.created"
    await ws.send_str(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 8192}))
    closing = await ws.receive()
    assert closing.type == WSMsgType.CLOSE
    assert ws.close_code == 1009


async def test_a_long_model_name_is_refused_with_a_close_reason_that_fits(serve: Serve) -> None:
    http = await serve()
    ws = await http.ws_connect("/v1/realtime?model=" + "é" * 300)
    refusal = RawClient.aiohttp(ws)
    assert_error(await refusal.expect("error"), "model_not_found", param="model")
    closing = await ws.receive()
    assert (closing.type, ws.close_code) == (WSMsgType.CLOSE, 1008)
    assert 0 < len(closing.extra.encode()) <= 123
