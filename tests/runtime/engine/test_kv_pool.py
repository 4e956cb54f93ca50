"""Where the KV pool puts a conversation's blocks: in one run (which attention reads in place), with room
to grow on both sides, and in any free blocks when no run is left; a conversation in scattered blocks
replies exactly as one in a run."""

from __future__ import annotations

import pytest
import torch

from aural.runtime.engine.base import Message, SamplingParams
from aural.runtime.engine.batching.kv_pool import GROWTH, KVPool, PoolFull, PoolGeometry, SequenceCache
from tests.support.engines import loaded

SIZE = 16


def pool(blocks: int) -> KVPool:
    geometry = PoolGeometry(layers=1, kv_heads=1, head_dim=4, dtype=torch.float32)
    return KVPool(geometry, blocks * geometry.bytes_per_token * SIZE, block_size=SIZE, device=torch.device("cpu"))


def is_run(blocks: list[int]) -> bool:
    return blocks == list(range(blocks[0], blocks[0] + len(blocks)))


def test_conversations_growing_side_by_side_each_stay_one_run():
    kv = pool(1000)
    first, second = SequenceCache(), SequenceCache()
    for blocks in range(1, GROWTH + 2):
        kv.ensure(first, blocks * SIZE)
        kv.ensure(second, blocks * SIZE)
    assert is_run(first.blocks) and is_run(second.blocks)
    assert first.blocks[0] == 1 + GROWTH, "room for whatever comes before it"
    assert second.blocks[0] == first.blocks[-1] + 1, "the first grew into the room left after it"
    assert kv.free_blocks == 999 - 2 * (GROWTH + 1)


def test_a_run_that_cannot_grow_continues_elsewhere_and_every_block_is_counted():
    kv = pool(300)
    first, second = SequenceCache(), SequenceCache()
    kv.ensure(first, SIZE)
    kv.ensure(second, SIZE)
    kv.ensure(first, (GROWTH + 10) * SIZE)  # more than the room between the two
    assert len(first.blocks) == GROWTH + 10 and len(set(first.blocks)) == GROWTH + 10
    assert second.blocks[0] not in first.blocks
    kv.crop(first, 5 * SIZE)
    assert len(first.blocks) == 5 and kv.free_blocks == 299 - 6
    kv.clear(first)
    kv.clear(second)
    assert kv.free_blocks == 299


def test_scattered_free_blocks_still_serve_and_a_pool_too_full_allocates_nothing():
    kv = pool(41)
    hog = SequenceCache()
    kv.ensure(hog, 40 * SIZE)
    kv.release(hog.blocks[::2])  # every other block free: no run of two anywhere
    cache = SequenceCache()
    kv.ensure(cache, 5 * SIZE)
    assert cache.blocks == sorted(hog.blocks[::2])[:5]
    with pytest.raises(PoolFull):
        kv.ensure(cache, 21 * SIZE)
    assert len(cache.blocks) == 5 and kv.free_blocks == 15


async def reply_ids(session) -> list[int]:
    conversation = [Message("user", ("Tell me about the sea and the ships on it.",), "u")]
    async for _ in session.generate(conversation, "r", SamplingParams(max_tokens=40)):
        pass
    return list(session.generated["r"])


@pytest.mark.model
async def test_a_conversation_in_scattered_blocks_replies_as_one_in_a_run():
    with loaded(prefill_chunk=16) as engine:
        session = await engine.open_session()
        in_run = await reply_ids(session)
        assert is_run(session.resident.cache.blocks)
        await session.close()

        hog = SequenceCache()  # the engine is idle: nothing else touches the pool now
        engine.pool.ensure(hog, engine.pool.free_blocks * engine.pool.block_size)
        engine.pool.release(hog.blocks[::2])
        session = await engine.open_session()
        scattered = await reply_ids(session)
        assert not is_run(session.resident.cache.blocks), "read by gathering"
        assert scattered == in_run
        await session.close()
