"""`/metrics` and the per-response log line, against the fake engine: a turn moves the figures a scrape reads."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aural.runtime.engine.base import DeviceMemory, EngineStats
from aural.runtime.logs import configure_logging
from tests.support.client import RawClient, b64, text_turn
from tests.support.fake_engine import FakeEngine, Reply

from .conftest import Serve

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(http: TestClient[Any, Any]) -> Samples:
    """Every sample of `/metrics`, by name and labels."""
    async with http.get("/metrics") as reply:
        assert reply.status == 200 and reply.content_type == "text/plain"
        text = await reply.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def open_client(http: TestClient[Any, Any]) -> RawClient:
    client = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    await client.expect("session.created")
    return client


def pcm(seconds: float) -> bytes:
    """A 220 Hz tone as PCM16 at 24 kHz (the GA wire format)."""
    t = np.arange(int(seconds * 24000)) / 24000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2").tobytes()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The runtime's log, as JSON lines in a buffer, for the test's duration."""
    buffer = io.StringIO()
    configure_logging("info", "json", buffer)
    yield buffer
    configure_logging("info")


async def test_a_turn_moves_the_metrics(serve: Serve, fake: FakeEngine) -> None:
    fake.script(Reply(("Hel", "lo", " there.")))
    http = await serve()
    before = await scrape(http)
    assert before[("aural_conversations_active", ())] == 0 and before[("aural_draining", ())] == 0
    client = await open_client(http)
    await client.send({"type": "input_audio_buffer.append", "audio": b64(pcm(0.5))})
    await client.send({"type": "input_audio_buffer.clear"})
    await client.expect("input_audio_buffer.cleared")
    await client.send({"type": "conversation.item.retrieve", "item_id": "item_nope"})
    await client.expect("error")
    turn = await text_turn(client, "Hi")

    after = await scrape(http)
    usage = turn.response["usage"]
    assert after[("aural_conversations_active", ())] == 1
    assert after[("aural_responses_total", (("status", "completed"),))] == 1
    assert after[("aural_input_tokens_total", ())] == usage["input_tokens"] > 0
    assert after[("aural_output_tokens_total", ())] == usage["output_tokens"] == 3
    assert after[("aural_cached_input_tokens_total", ())] == usage["input_token_details"]["cached_tokens"]
    assert after[("aural_response_ttft_seconds_count", ())] == 1
    assert after[("aural_response_inter_token_seconds_count", ())] == 2  # three deltas, two gaps
    assert after[("aural_response_duration_seconds_count", ())] == 1
    assert after[("aural_input_audio_seconds_total", ())] == pytest.approx(0.5, abs=0.01)
    assert after[("aural_errors_total", (("code", "item_not_found"),))] == 1


async def test_refusals_count_as_errors_and_the_engine_reports_its_pool_and_device(
    serve: Serve, fake: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    stats = EngineStats(16, 100, 25, 4096, conversations_resident=1, conversations_offloaded=0)
    monkeypatch.setattr(fake, "stats", lambda: stats)
    monkeypatch.setattr(
        fake, "device_memory", lambda: DeviceMemory(allocated=3 << 30, reserved=4 << 30, total=80 << 30)
    )
    http = await serve(max_sessions=0)
    refused = RawClient.aiohttp(await http.ws_connect("/v1/realtime?model=fake"))
    await refused.expect("error")

    samples = await scrape(http)
    assert samples[("aural_errors_total", (("code", "session_limit_reached"),))] == 1
    assert samples[("aural_kv_pool_bytes", (("state", "used"),))] == 25 * 4096
    assert samples[("aural_kv_pool_bytes", (("state", "total"),))] == 100 * 4096
    assert samples[("aural_device_memory_bytes", (("kind", "reserved"),))] == 4 << 30
    assert samples[("aural_device_memory_bytes", (("kind", "total"),))] == 80 << 30


async def test_two_apps_keep_their_own_figures(serve: Serve, fake: FakeEngine) -> None:
    first, second = await serve(), await serve()
    await text_turn(await open_client(first), "Hi")
    assert (await scrape(first))[("aural_responses_total", (("status", "completed"),))] == 1
    assert ("aural_responses_total", (("status", "completed"),)) not in await scrape(second)


async def test_each_response_logs_one_line_bound_to_its_conversation(
    serve: Serve, fake: FakeEngine, log_lines: io.StringIO
) -> None:
    fake.script(Reply(("Hel", "lo")))
    client = await open_client(await serve())
    turn = await text_turn(client, "Hi")
    await client.send({"type": "conversation.item.retrieve", "item_id": "item_nope"})
    await client.expect("error")

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    mine = [line for line in lines if line["logger"].startswith("aural.")]
    opened = next(line for line in mine if line["event"] == "session opened")
    conversation = opened["conversation"]
    assert conversation.startswith("conv_") and all(line["conversation"] == conversation for line in mine)
    [done] = [line for line in mine if line["event"] == "response done"]
    usage = turn.response["usage"]
    assert done["response"] == turn.response_id and done["status"] == "completed"
    assert (done["input_tokens"], done["output_tokens"]) == (usage["input_tokens"], 2)
    assert done["cached_tokens"] == 0 and done["ttft_ms"] >= 0 and done["duration_ms"] >= done["ttft_ms"]
    assert done["level"] == "info" and done["timestamp"].endswith("Z")
