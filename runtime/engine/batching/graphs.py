"""Decode steps captured as CUDA graphs, one per bucket of batch rows and cache blocks.

An eager decode step of a 7B model spends most of its time in Python issuing some thousand kernels
(measured: 26-31 ms of host time for a step whose weights take ~4 ms to read). A CUDA graph replays the
same kernels with one launch. Graphs have static shapes, so a step is padded up to a bucket
(`StaticDecode`): the rows to the next of `ROW_BUCKETS`, each row's blocks to the next power of two.
Padding rows feed token 0 at position 0 and read and write only the pool's padding block; padding
blocks are masked. The padded step computes the real rows' logits as the eager step does (tested on the
CPU, where no graph is captured).

A bucket is captured the first time a batch needs it (a few hundred milliseconds for a 7B model), and
checked once: its first replay must agree with the eager forward of the same padded inputs (to within
`AGREEMENT`), or graphs are switched off for good with a warning and the engine goes on eagerly. A batch
wider than the largest bucket runs eagerly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
import torch

from .kv_pool import SequenceCache
from .paged import Segment, StepInputs

if TYPE_CHECKING:
    from .runner import ModelRunner

log = structlog.get_logger(__name__)

ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
MIN_BLOCKS = 8
AGREEMENT = 0.02  # largest difference between a replay and the eager step, relative to the largest logit


def bucket(runner: ModelRunner, caches: list[SequenceCache]) -> tuple[int, int] | None:
    """The (rows, blocks) bucket of a decode step over `caches`, or None when none fits."""
    pool = runner.pool
    rows = next((size for size in ROW_BUCKETS if size >= len(caches)), None)
    needed = max(pool.blocks_for(cache.length + 1) for cache in caches)
    blocks = max(MIN_BLOCKS, 1 << (needed - 1).bit_length())
    if rows is None or blocks > pool.capacity:
        return None
    return rows, blocks


class StaticDecode:
    """A decode step's inputs in fixed tensors of one bucket, loaded anew for each batch."""

    def __init__(self, runner: ModelRunner, rows: int, blocks: int) -> None:
        self._runner = runner
        device, size = runner.device, runner.pool.block_size
        mask = torch.zeros((rows, 1, 1, blocks * size), dtype=torch.bool, device=device)
        mask[..., 0] = True  # padding rows attend to the padding block's first slot
        self.segment = Segment(0, rows, 1, torch.zeros((rows, blocks), dtype=torch.long, device=device), None, mask)
        self.inputs = StepInputs(
            positions=torch.zeros((1, rows), dtype=torch.long, device=device),
            write_slots=torch.zeros(rows, dtype=torch.long, device=device),
            segments=[self.segment],
        )
        self.tokens = torch.zeros(rows, dtype=torch.long, device=device)

    def load(self, tokens: list[int], caches: list[SequenceCache]) -> None:
        """Copy a batch into the static inputs, padding rows and blocks."""
        pool, segment = self._runner.pool, self.segment
        size, rows, blocks = pool.block_size, segment.rows, segment.read_blocks.shape[1]
        padding = rows - len(tokens)
        lengths = [cache.length + 1 for cache in caches] + [1] * padding
        table = [cache.blocks[: pool.blocks_for(cache.length + 1)] for cache in caches] + [[]] * padding
        slots = [cache.blocks[cache.length // size] * size + cache.length % size for cache in caches]
        host_table = torch.zeros((rows, blocks), dtype=torch.long)
        for row, owned in enumerate(table):
            host_table[row, : len(owned)] = torch.tensor(owned, dtype=torch.long)
        self.tokens.copy_(torch.tensor(tokens + [0] * padding), non_blocking=True)
        self.inputs.positions.copy_(torch.tensor([[cache.length for cache in caches] + [0] * padding]))
        self.inputs.write_slots.copy_(torch.tensor(slots + [0] * padding))
        segment.read_blocks.copy_(host_table.to(self._runner.device, non_blocking=True))
        span = torch.arange(blocks * size)
        assert segment.mask is not None
        segment.mask.copy_((span[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :])

    def run(self) -> torch.Tensor:
        """The eager forward of the static inputs: logits `[bucket rows, vocab]`."""
        runner = self._runner
        return runner.logits(runner.forward(runner.embeddings(self.tokens), self.inputs))


class DecodeGraphs:
    """Captured decode steps of one runner, by (rows, blocks) bucket."""

    def __init__(self, runner: ModelRunner) -> None:
        self._runner = runner
        self._captured: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, StaticDecode, torch.Tensor]] = {}
        self._memory = torch.cuda.graph_pool_handle()
        self.enabled = True

    def decode(self, tokens: list[int], caches: list[SequenceCache]) -> torch.Tensor | None:
        """The batch's logits from a graph replay, or None when it must run eagerly."""
        key = bucket(self._runner, caches) if self.enabled else None
        if key is None:
            return None
        fresh = key not in self._captured
        if fresh:
            captured = self._capture(*key)
            if captured is None:
                return None
            self._captured[key] = captured
        graph, static, output = self._captured[key]
        static.load(tokens, caches)
        graph.replay()
        logits = output[: len(tokens)]
        if fresh and not self._agrees(static, logits):
            return None
        return logits

    def _capture(self, rows: int, blocks: int) -> tuple[torch.cuda.CUDAGraph, StaticDecode, torch.Tensor] | None:
        device = self._runner.device
        static = StaticDecode(self._runner, rows, blocks)
        graph = torch.cuda.CUDAGraph()
        try:
            side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: lazy initialisations must not happen during capture
                    static.run()
            torch.cuda.current_stream(device).wait_stream(side)
            with torch.cuda.graph(graph, pool=self._memory):
                output = static.run()
        except Exception:
            log.warning(
                "cuda graph capture failed: decoding eagerly from now on", rows=rows, blocks=blocks, exc_info=True
            )
            self.enabled = False
            return None
        log.info("cuda graph captured", rows=rows, blocks=blocks)
        return graph, static, output

    def _agrees(self, static: StaticDecode, replayed: torch.Tensor) -> bool:
        """A new graph's first replay against the eager forward of the same inputs: equal but for the rounding
        of kernels that may reduce in another order (a graph replaying stale addresses would be far off)."""
        eager = static.run()[: len(replayed)]
        if float((eager - replayed).abs().max()) <= AGREEMENT * float(eager.abs().max()):
            return True
        log.warning(
            "cuda graph replay differs from the eager step: decoding eagerly from now on",
            max_difference=float((eager - replayed).abs().max()),
        )
        self.enabled = False
        return False
