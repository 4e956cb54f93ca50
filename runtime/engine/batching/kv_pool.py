"""The paged KV pool: every conversation's cache lives in fixed-size blocks of one preallocated tensor.

Storage is one tensor `[layers, 2 (key, value), kv_heads, blocks, block_size, head_dim]` on the device,
allocated once, so memory is accounted exactly and a batch reads any mix of conversations without
copying or padding whole caches. Block 0 is never handed out: padding rows of a batch read and write
it. Blocks are handed out in runs: a conversation grows into the blocks right after its last one, and a
new one starts in the middle of a free stretch, leaving room to grow on both sides. A conversation whose
blocks are one run is, for each head, one stretch of memory that attention reads in place (`paged`);
when the pool is too fragmented for a run, any free blocks serve.

A conversation owns a `SequenceCache`: its blocks in order, how many positions they hold, and the key of
every position (token id for text, clip key and index for audio), so that a new rendering of
the conversation reuses exactly the prefix whose tokens *and* audio are unchanged.

A conversation's blocks can move to host memory (`offload`) and back (`restore`) bit for bit, or be
forgotten (`drop`: the next request recomputes them). All of this runs on the device thread only.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from ...errors import KVBudgetExceeded

GIB = 2**30
GROWTH = 64  # free blocks left on each side of a new run, where it and the run before it can grow


class PoolFull(Exception):
    """Not enough free blocks right now (the scheduler makes room, waits or refuses). `needed` is how many
    free blocks the request takes."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"{needed} free blocks needed")
        self.needed = needed


@dataclass(frozen=True)
class PoolGeometry:
    """The shape of one position's cache: the model's layers, key/value heads and head size."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype

    @property
    def bytes_per_token(self) -> int:
        element = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.layers * self.kv_heads * self.head_dim * element


@dataclass
class SequenceCache:
    """One conversation's cache: its blocks in the pool (or a host copy of them), and the key of each
    cached position. `keys` always has exactly as many entries as positions are cached."""

    blocks: list[int] = field(default_factory=list)
    keys: list[Hashable] = field(default_factory=list)
    host: torch.Tensor | None = None
    """The blocks' contents while offloaded: `[layers, 2, heads, blocks, block_size, dim]` in host memory."""

    @property
    def length(self) -> int:
        return len(self.keys)

    @property
    def offloaded(self) -> bool:
        return self.host is not None


class KVPool:
    """Fixed-size blocks of cache on one device.

    Args:
        geometry: the model's cache shape.
        budget_bytes: the pool's size; rounded down to whole blocks (at least two: the padding block and one).
        block_size: positions per block.
        device: where the pool lives.
    """

    def __init__(
        self, geometry: PoolGeometry, budget_bytes: int, *, block_size: int = 16, device: torch.device
    ) -> None:
        self.geometry = geometry
        self.block_size = block_size
        self.device = device
        self.bytes_per_block = geometry.bytes_per_token * block_size
        self.num_blocks = max(2, budget_bytes // self.bytes_per_block)
        shape = (geometry.layers, 2, geometry.kv_heads, self.num_blocks, block_size, geometry.head_dim)
        # Uninitialised: a block is always written before it is read (padding reads are masked).
        self.data = torch.empty(shape, dtype=geometry.dtype, device=device)
        self._is_free = bytearray(b"\0" + b"\1" * (self.num_blocks - 1))  # block 0: padding only
        self._free_count = self.num_blocks - 1
        self._pinned = device.type == "cuda"
        self._gather: torch.Tensor | None = None

    # --- blocks ------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Blocks a conversation can ever use (all but the padding block)."""
        return self.num_blocks - 1

    @property
    def free_blocks(self) -> int:
        return self._free_count

    def blocks_for(self, positions: int) -> int:
        return math.ceil(positions / self.block_size)

    def check_fits(self, positions: int) -> None:
        """Raises: KVBudgetExceeded if the pool could never hold `positions` positions of one conversation."""
        if self.blocks_for(positions) > self.capacity:
            raise KVBudgetExceeded(
                f"The conversation needs {positions} positions of KV cache; the server's KV budget holds "
                f"{self.capacity * self.block_size} in all."
            )

    def ensure(self, cache: SequenceCache, positions: int) -> None:
        """Give `cache` blocks for `positions` positions.

        Raises:
            PoolFull: not enough free blocks now (nothing is allocated then).
            KVBudgetExceeded: the pool could never hold that many positions.
        """
        needed = self.blocks_for(positions) - len(cache.blocks)
        if needed <= 0:
            return
        self.check_fits(positions)
        if needed > self._free_count:
            raise PoolFull(needed)
        cache.blocks += self._take(needed, after=cache.blocks[-1] if cache.blocks else None)

    def crop(self, cache: SequenceCache, length: int) -> None:
        """Keep the first `length` positions; blocks past them return to the pool."""
        del cache.keys[length:]
        keep = self.blocks_for(length)
        self.release(cache.blocks[keep:])
        del cache.blocks[keep:]

    def release(self, blocks: Sequence[int]) -> None:
        for block in blocks:
            self._is_free[block] = 1
        self._free_count += len(blocks)

    def _take(self, count: int, *, after: int | None = None) -> list[int]:
        """`count` free blocks (there are): those right after block `after` while free, then a run in the
        middle of a free stretch with `GROWTH` blocks to spare on each side, else the first run that fits,
        else the lowest free blocks."""
        free = self._is_free
        taken: list[int] = []
        if after is not None:
            block = after + 1
            while len(taken) < count and block < self.num_blocks and free[block]:
                taken.append(block)
                block += 1
        rest = count - len(taken)
        if rest:
            start = free.find(b"\1" * (rest + 2 * GROWTH))
            start = start + GROWTH if start >= 0 else free.find(b"\1" * rest)
            if start >= 0:
                taken += range(start, start + rest)
            else:
                for block in taken:
                    free[block] = 0
                block = 0
                while len(taken) < count:
                    block = free.find(1, block + 1)
                    free[block] = 0
                    taken.append(block)
        for block in taken:
            free[block] = 0
        self._free_count -= count
        return taken

    def clear(self, cache: SequenceCache) -> None:
        """Forget the whole cache (its blocks, its host copy)."""
        self.release(cache.blocks)
        cache.blocks, cache.keys, cache.host = [], [], None

    def slots(self, cache: SequenceCache, start: int, stop: int) -> list[int]:
        """Flat slot indices (block × block_size + offset) of positions `start:stop`."""
        size = self.block_size
        return [cache.blocks[p // size] * size + p % size for p in range(start, stop)]

    # --- host memory -------------------------------------------------------------------------------

    def offload(self, cache: SequenceCache) -> int:
        """Move the cache's blocks to host memory; returns the bytes moved."""
        if cache.offloaded or not cache.blocks:
            return 0
        index = torch.tensor(cache.blocks, device=self.device)
        host = self.data.index_select(3, index).to("cpu")
        cache.host = host.pin_memory() if self._pinned else host
        self.release(cache.blocks)
        cache.blocks = []
        return cache.host.numel() * cache.host.element_size()

    def restore(self, cache: SequenceCache) -> None:
        """Bring an offloaded cache back into the pool, bit for bit.

        Raises:
            PoolFull: not enough free blocks now (the cache stays offloaded).
        """
        if cache.host is None:
            return
        count = cache.host.shape[3]
        if count > self._free_count:
            raise PoolFull(count)
        cache.blocks = self._take(count)
        index = torch.tensor(cache.blocks, device=self.device)
        self.data.index_copy_(3, index, cache.host.to(self.device, non_blocking=True))
        cache.host = None

    # --- views for the forward ---------------------------------------------------------------------

    def layer(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `index`'s keys and values, each `[heads, blocks, block_size, dim]`."""
        return self.data[index, 0], self.data[index, 1]

    def gather_buffers(self, blocks: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Two reusable `[heads, blocks, block_size, dim]` buffers to gather keys and values into, on the CPU.

        A fresh tensor of a batch's keys, megabytes each layer, is a fresh mapping of memory whose every page
        faults when written (glibc maps large allocations anew): gathering into reused buffers ran 2-5x
        faster. On CUDA the caching allocator already reuses memory, and a captured graph must keep the
        addresses it was captured with, so there is none (None).
        """
        if self.device.type != "cpu":
            return None
        shape = (self.geometry.kv_heads, blocks, self.block_size, self.geometry.head_dim)
        count = math.prod(shape)
        if self._gather is None or self._gather.numel() < 2 * count:
            self._gather = torch.empty(2 * count, dtype=self.data.dtype)
        return self._gather[:count].view(shape), self._gather[count : 2 * count].view(shape)


def default_budget(device: torch.device, *, share: float = 0.8, cpu_bytes: int = 2 * GIB) -> int:
    """The KV budget when none is given: a share of the device's free memory (after the model loaded),
    or a fixed size on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * share)
    return cpu_bytes
