"""The padded, static inputs a CUDA graph replays, checked on the CPU (where no graph is captured): padding
rows and blocks leave the real rows' logits as the eager step computes them, and every later batch loaded
into the same tensors does too."""

from __future__ import annotations

import pytest
import torch

from aural.runtime.engine.batching.graphs import MIN_BLOCKS, ROW_BUCKETS, StaticDecode, bucket
from aural.runtime.engine.batching.kv_pool import SequenceCache
from aural.runtime.engine.batching.runner import Chunk

pytestmark = pytest.mark.model


def _cached(engine, lengths: list[int]) -> list[SequenceCache]:
    """Caches of the given lengths, filled with different text."""
    runner, pool = engine.runner, engine.pool
    caches = []
    with torch.inference_mode():
        for index, length in enumerate(lengths):
            cache = SequenceCache()
            ids = [(7 * index + k) % 200 + 20 for k in range(length)]
            pool.ensure(cache, length + 1)
            runner.step([], [], [Chunk(cache, 0, runner.embed(ids))])
            cache.keys.extend(ids)
            caches.append(cache)
    return caches


def test_buckets_round_rows_and_blocks_up(engine):
    caches = _cached(engine, [5, 200, 40])
    try:
        assert bucket(engine.runner, caches) == (4, 16)  # 3 rows → 4; 201 positions = 13 blocks → 16
        assert bucket(engine.runner, caches[:1]) == (1, MIN_BLOCKS)
        assert ROW_BUCKETS[-1] == 64
    finally:
        for cache in caches:
            engine.pool.clear(cache)


def test_a_padded_static_step_computes_the_real_rows_as_the_eager_step(engine):
    runner, pool = engine.runner, engine.pool
    first, second = _cached(engine, [5, 200, 40]), _cached(engine, [90, 17])
    try:
        rows, blocks = bucket(runner, first)  # type: ignore[misc]
        static = StaticDecode(runner, rows, blocks)
        with torch.inference_mode():
            for caches, tokens in ((first, [65, 66, 67]), (second, [70, 71])):  # a second batch, same tensors
                eager, _ = runner.step(tokens, caches)
                assert eager is not None
                for cache in caches:  # the eager step wrote its keys and values: write them again, padded
                    pool.ensure(cache, cache.length + 1)
                static.load(tokens, caches)
                padded = static.run()[: len(tokens)]
                torch.testing.assert_close(padded, eager, rtol=1e-5, atol=1e-5)
    finally:
        for cache in [*first, *second]:
            pool.clear(cache)
