"""A forward pass over the paged pool: the inputs of one batch, and the cache object the model's layers see.

transformers' attention layers call `cache.update(keys, values, layer_idx)` with the new positions' keys
and values and attend over what it returns. `PagedAttentionCache` writes the new positions into their
pool slots and returns, per row, the keys and values of the blocks that row owns (gathered block by
block, padded to the longest row); the mask passed with the forward hides each row's padding and,
within a chunk of several positions, the future. Attention itself stays transformers' SDPA.

A batch is either several rows of one new position each (decode) or one row of many (a prefill chunk,
or tokens a grammar forced). With a single row the gather stops at the row's exact length and no mask
is needed for one position, so a conversation decoded alone computes exactly what a contiguous cache
would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .kv_pool import KVPool, SequenceCache


@dataclass
class BatchInputs:
    """Tensors of one forward: `rows` rows of `width` new positions each.

    `write_slots` are the pool slots of the new positions (row-major); `read_blocks` the blocks each row
    attends over, `[rows, blocks]` (padding: block 0); `read_length` how many positions of the gathered
    blocks to keep (None: all); `mask` `[rows, 1, width, read positions]` (True: attend) or None.
    """

    positions: torch.Tensor
    write_slots: torch.Tensor
    read_blocks: torch.Tensor
    read_length: int | None
    mask: torch.Tensor | None

    @property
    def rows(self) -> int:
        return int(self.positions.shape[0])


def decode_inputs(pool: KVPool, caches: Sequence[SequenceCache], device: torch.device) -> BatchInputs:
    """One new position per row: the position after each cache's last (its blocks already reserved)."""
    size = pool.block_size
    lengths = [cache.length + 1 for cache in caches]  # including the new position
    widest = max(pool.blocks_for(length) for length in lengths)
    table = [cache.blocks[: pool.blocks_for(length)] for cache, length in zip(caches, lengths, strict=True)]
    table = [row + [0] * (widest - len(row)) for row in table]
    slots = [cache.blocks[cache.length // size] * size + cache.length % size for cache in caches]
    positions = torch.tensor([[cache.length] for cache in caches], device=device)
    if len(caches) == 1:
        return BatchInputs(
            positions, torch.tensor(slots, device=device), torch.tensor(table, device=device), lengths[0], None
        )
    span = torch.arange(widest * size, device=device)
    mask = (span[None, :] < torch.tensor(lengths, device=device)[:, None])[:, None, None, :]
    return BatchInputs(positions, torch.tensor(slots, device=device), torch.tensor(table, device=device), None, mask)


def chunk_inputs(pool: KVPool, cache: SequenceCache, start: int, stop: int, device: torch.device) -> BatchInputs:
    """Positions `start:stop` of one cache (its blocks already reserved), attending causally over `:stop`."""
    width = stop - start
    table = torch.tensor([cache.blocks[: pool.blocks_for(stop)]], device=device)
    positions = torch.arange(start, stop, device=device)[None, :]
    slots = torch.tensor(pool.slots(cache, start, stop), device=device)
    mask = None
    if width > 1:
        seen = torch.arange(stop, device=device)
        mask = (seen[None, :] <= positions[0][:, None])[None, None, :, :]
    return BatchInputs(positions, slots, table, stop, mask)


class PagedAttentionCache:
    """What the model's attention layers take as their cache for one forward over the pool.

    Duck-typed to transformers' `Cache.update`: the layers call nothing else when position ids and the
    mask are given.
    """

    def __init__(self, pool: KVPool, inputs: BatchInputs) -> None:
        self._pool = pool
        self._inputs = inputs

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, kwargs: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions' keys and values (`[rows, heads, width, dim]`) into their slots; return
        each row's keys and values over its blocks, `[rows, heads, read positions, dim]`."""
        keys, values = self._pool.layer(layer_idx)
        inputs = self._inputs
        rows, heads, _, dim = key_states.shape
        for pool_part, new in ((keys, key_states), (values, value_states)):
            flat = pool_part.view(-1, heads, dim)
            flat.index_copy_(0, inputs.write_slots, new.transpose(1, 2).reshape(-1, heads, dim))
        blocks = inputs.read_blocks.view(-1)
        buffers = self._pool.gather_buffers(blocks.numel())
        gathered = []
        for part, pool_part in enumerate((keys, values)):
            if buffers is None:
                read = pool_part.index_select(0, blocks)
            else:
                read = torch.index_select(pool_part, 0, blocks, out=buffers[part])
            read = read.view(rows, -1, heads, dim)
            if inputs.read_length is not None:
                read = read[:, : inputs.read_length]
            gathered.append(read.transpose(1, 2))
        return gathered[0], gathered[1]
