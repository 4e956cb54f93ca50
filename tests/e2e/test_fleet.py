"""The fleet engine over the wire: the GA `session.truncation` setting, the KV budget's refusal, and the
room that `rate_limits.updated` reports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from tests.support.client import (
    add_text,
    assert_error,
    assert_turn_works,
    create_response,
    read_response,
    text_turn,
)
from tests.support.engines import loaded

from .conftest import Connect, open_session

pytestmark = pytest.mark.model

BLOCKS = 40  # of 16 positions: 624 usable (block 0 pads)


@pytest.fixture(scope="module")
def engine() -> Iterator[TransformersEngine]:
    """This module's server runs the tiny model on a small KV pool that refuses when full."""
    with loaded() as sizing:
        per_block = sizing.pool.bytes_per_block
    with loaded(kv_budget=BLOCKS * per_block, on_full="error") as small:
        yield small


async def test_truncation_settings_round_trip_and_are_checked(connect: Connect) -> None:
    client = await open_session(connect)
    setting = {"type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": 300}}
    await client.send({"type": "session.update", "session": {"type": "realtime", "truncation": setting}})
    updated = await client.expect("session.updated")
    assert updated["session"]["truncation"] == setting
    too_long = {**setting, "token_limits": {"post_instructions": 10**6}}
    await client.send({"type": "session.update", "session": {"type": "realtime", "truncation": too_long}})
    assert_error(
        await client.expect("error"), "invalid_value", param="session.truncation.token_limits.post_instructions"
    )
    await client.send({"type": "session.update", "session": {"type": "realtime", "truncation": "disabled"}})
    assert (await client.expect("session.updated"))["session"]["truncation"] == "disabled"


async def test_retention_ratio_truncation_cuts_the_history_and_keeps_the_cut(connect: Connect) -> None:
    """With 300 tokens after the instructions and a ratio of 0.5, a long conversation stays under the limit,
    and the turns after a cut reuse the cache."""
    client = await open_session(connect)
    setting = {"type": "retention_ratio", "retention_ratio": 0.5, "token_limits": {"post_instructions": 300}}
    await client.send({"type": "session.update", "session": {"type": "realtime", "truncation": setting}})
    await client.expect("session.updated")
    inputs, cached = [], []
    for turn in range(10):
        done = (await text_turn(client, f"Turn {turn}: " + "words " * 10, max_tokens=4)).response
        inputs.append(done["usage"]["input_tokens"])
        cached.append(done["usage"]["input_token_details"]["cached_tokens"])
    system = inputs[0] - 70  # the system turn and the first user turn's own tokens
    assert max(inputs) <= system + 300 + 80, inputs
    recomputed = [k for k in range(1, 10) if cached[k] < inputs[k - 1] - 1]
    assert 1 <= len(recomputed) <= 3, (inputs, cached)


async def test_a_full_kv_pool_refuses_the_response_and_the_conversation_goes_on(connect: Connect) -> None:
    client = await open_session(connect)
    await add_text(client, "x" * 700)
    added = await client.expect("conversation.item.added")
    await create_response(client, max_tokens=4)
    turn = await read_response(client)
    assert turn.response["status"] == "failed"
    assert turn.response["status_details"]["error"]["code"] == "kv_budget_exceeded"
    assert_error(turn.one("error"), "kv_budget_exceeded")
    await client.send({"type": "conversation.item.delete", "item_id": added["item"]["id"]})
    await client.expect("conversation.item.deleted")
    await assert_turn_works(client)


async def test_rate_limits_report_the_room_left_in_the_pool(connect: Connect) -> None:
    """The room is the least of the context's and the KV pool's: this pool holds 624 positions in all."""
    client = await open_session(connect)
    done = await text_turn(client, "Hello.", max_tokens=4)
    await text_turn(client, "Again.", max_tokens=4)  # read on past the first turn's rate_limits.updated
    (limit,) = next(event for event in client.events if event["type"] == "rate_limits.updated")["rate_limits"]
    assert limit["name"] == "tokens" and limit["limit"] == 8192
    used = done.response["usage"]["total_tokens"]
    assert limit["remaining"] <= BLOCKS * 16 - used < 8192 - used
