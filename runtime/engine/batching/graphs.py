"""Decode steps captured as CUDA graphs, one per bucket of batch rows and cache blocks.

An eager decode step of a 7B model spends most of its time in Python issuing some thousand kernels
(measured: 26-31 ms of host time for a step whose weights take ~4 ms to read). A CUDA graph replays the
same kernels with one launch. Graphs have static shapes, so a step is padded up to a bucket: the rows
to the next of `ROW_BUCKETS`, each row's blocks to the next power of two. Padding rows feed token 0 at
position 0 and read and write only the pool's padding block; padding blocks are masked.

A bucket is captured the first time a batch needs it (a few hundred milliseconds for a 7B model), and
checked once: its first replay must equal the eager forward of the same padded inputs, or graphs are
switched off for good with a warning and the engine goes on eagerly. A batch wider than the largest
bucket runs eagerly.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    tokens: torch.Tensor
    inputs: StepInputs
    logits: torch.Tensor


class DecodeGraphs:
    """Captured decode steps of one runner, by (rows, blocks) bucket."""

    def __init__(self, runner: ModelRunner) -> None:
        self._runner = runner
        self._captured: dict[tuple[int, int], _Captured] = {}
        self._memory = torch.cuda.graph_pool_handle()
        self.enabled = True

    def decode(self, tokens: list[int], caches: list[SequenceCache]) -> torch.Tensor | None:
        """The batch's logits from a graph replay, or None when it must run eagerly."""
        pool = self._runner.pool
        rows = next((bucket for bucket in ROW_BUCKETS if bucket >= len(tokens)), None)
        if not self.enabled or rows is None:
            return None
        needed = max(pool.blocks_for(cache.length + 1) for cache in caches)
        blocks = max(MIN_BLOCKS, 1 << (needed - 1).bit_length())
        if blocks > pool.capacity:
            return None
        key = (rows, blocks)
        captured = self._captured.get(key)
        fresh = captured is None
        if captured is None:
            captured = self._capture(rows, blocks)
            if captured is None:
                return None
            self._captured[key] = captured
        self._load(captured, tokens, caches)
        captured.graph.replay()
        logits = captured.logits[: len(tokens)]
        if fresh and not self._agrees(captured, logits):
            return None
        return logits

    def _load(self, captured: _Captured, tokens: list[int], caches: list[SequenceCache]) -> None:
        """Copy a batch into the graph's static inputs, padding rows and blocks."""
        pool, inputs = self._runner.pool, captured.inputs
        (segment,) = inputs.segments
        size, rows, blocks = pool.block_size, segment.rows, segment.read_blocks.shape[1]
        padding = rows - len(tokens)
        lengths = [cache.length + 1 for cache in caches] + [1] * padding
        table = [cache.blocks[: pool.blocks_for(cache.length + 1)] for cache in caches] + [[]] * padding
        slots = [cache.blocks[cache.length // size] * size + cache.length % size for cache in caches]
        device = self._runner.device
        host_table = torch.zeros((rows, blocks), dtype=torch.long)
        for row, owned in enumerate(table):
            host_table[row, : len(owned)] = torch.tensor(owned, dtype=torch.long)
        captured.tokens.copy_(torch.tensor(tokens + [0] * padding), non_blocking=True)
        inputs.positions.copy_(torch.tensor([[cache.length for cache in caches] + [0] * padding]))
        inputs.write_slots.copy_(torch.tensor(slots + [0] * padding))
        segment.read_blocks.copy_(host_table.to(device, non_blocking=True))
        span = torch.arange(blocks * size)
        assert segment.mask is not None
        segment.mask.copy_((span[None, :] < torch.tensor(lengths)[:, None])[:, None, None, :])

    def _run(self, captured: _Captured) -> torch.Tensor:
        runner = self._runner
        return runner.logits(runner.forward(runner.embeddings(captured.tokens), captured.inputs))

    def _capture(self, rows: int, blocks: int) -> _Captured | None:
        device, size = self._runner.device, self._runner.pool.block_size
        mask = torch.zeros((rows, 1, 1, blocks * size), dtype=torch.bool, device=device)
        mask[..., 0] = True  # padding rows attend to the padding block's first slot
        segment = Segment(0, rows, 1, torch.zeros((rows, blocks), dtype=torch.long, device=device), None, mask)
        inputs = StepInputs(
            positions=torch.zeros((1, rows), dtype=torch.long, device=device),
            write_slots=torch.zeros(rows, dtype=torch.long, device=device),
            segments=[segment],
        )
        tokens = torch.zeros(rows, dtype=torch.long, device=device)
        captured = _Captured(torch.cuda.CUDAGraph(), tokens, inputs, torch.empty(0))
        try:
            side = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):  # warm-up: lazy initialisations must not happen during capture
                    self._run(captured)
            torch.cuda.current_stream(device).wait_stream(side)
            with torch.cuda.graph(captured.graph, pool=self._memory):
                captured.logits = self._run(captured)
        except Exception:
            log.warning(
                "cuda graph capture failed: decoding eagerly from now on", rows=rows, blocks=blocks, exc_info=True
            )
            self.enabled = False
            return None
        log.info("cuda graph captured", rows=rows, blocks=blocks)
        return captured

    def _agrees(self, captured: _Captured, replayed: torch.Tensor) -> bool:
        """A new graph's first replay against the eager forward of the same inputs."""
        eager = self._run(captured)[: len(replayed)]
        if torch.equal(eager, replayed):
            return True
        log.warning(
            "cuda graph replay differs from the eager step: decoding eagerly from now on",
            max_difference=float((eager - replayed).abs().max()),
        )
        self.enabled = False
        return False
