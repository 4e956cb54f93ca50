"""One forward pass over the paged pool: any mix of decode rows and prefill chunks.

The model's own classes run unchanged. The new positions of every conversation in the step are laid out
as one flat sequence (the chunks' positions first, one after another, then one position per decoding
conversation), so its linear layers read the weights once for all of them. Two things stand in for the
model's own cache and attention: `PagedAttentionCache.update` writes each layer's new keys and values into
their pool slots, and `paged_attention` (registered with transformers as the attention implementation
"aural_paged") splits the flat sequence into `Segment`s and attends each over its own blocks: each chunk
causally over its conversation's cache; the decode rows on the CPU each alone, on CUDA in one batch, each
over its own blocks (gathered block by block, padded to the longest row and masked: one set of kernels
for all rows). Attention itself is PyTorch's SDPA. A conversation's blocks are usually one run of the
pool (`KVPool` hands them out so), and a segment of one such conversation reads its keys and values in
place: gathering copied every cached position once more each step, which cost as much as attention
itself on the CPU (8 conversations of ~700 positions, `medium`: 72 ms of attention per step gathered,
33 in place).

A conversation decoded or prefilled alone reads exactly its length and needs no mask for one
position, so it computes exactly what a contiguous cache would (the fidelity tests compare tokens
with transformers' `generate()`). Without a step (`aural_step` not passed, as in `generate()`), the
registered attention is transformers' SDPA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from .kv_pool import KVPool, SequenceCache

ATTENTION = "aural_paged"


@dataclass
class Segment:
    """`rows` sequences of `width` new positions each, at `start` of the flat sequence, attending over
    `read_blocks` (`[rows, blocks]`; padding: block 0), cut to `read_length` positions (None: all), with
    `mask` (`[rows, 1, width, read positions]`, True: attend; None: all of them). `run_start`: the first
    block when there is one row and its blocks are one run, read in place."""

    start: int
    rows: int
    width: int
    read_blocks: torch.Tensor
    read_length: int | None
    mask: torch.Tensor | None
    run_start: int | None = None


@dataclass
class StepInputs:
    """One forward: the flat sequence's positions (`[1, tokens]`), their pool slots, and its segments."""

    positions: torch.Tensor
    write_slots: torch.Tensor
    segments: list[Segment]

    @property
    def tokens(self) -> int:
        return int(self.positions.shape[1])


def chunk_segment(
    pool: KVPool, cache: SequenceCache, start: int, stop: int, offset: int, device: torch.device
) -> Segment:
    """Positions `start:stop` of one cache (blocks reserved), attending causally over `:stop`, at `offset` of the
    flat sequence."""
    width = stop - start
    owned = cache.blocks[: pool.blocks_for(stop)]
    mask = None
    if width > 1:
        seen = torch.arange(stop, device=device)
        mask = (seen[None, :] <= torch.arange(start, stop, device=device)[:, None])[None, None]
    return Segment(offset, 1, width, torch.tensor([owned], device=device), stop, mask, _run_start(owned))


def _run_start(blocks: list[int]) -> int | None:
    """The first of `blocks` if they are consecutive."""
    return blocks[0] if blocks == list(range(blocks[0], blocks[0] + len(blocks))) else None


def decode_segment(pool: KVPool, caches: Sequence[SequenceCache], start: int, device: torch.device) -> Segment:
    """One new position per cache, after its last (blocks reserved), at `start` of the flat sequence."""
    lengths = [cache.length + 1 for cache in caches]
    widest = max(pool.blocks_for(length) for length in lengths)
    table = [cache.blocks[: pool.blocks_for(length)] for cache, length in zip(caches, lengths, strict=True)]
    blocks = torch.tensor([row + [0] * (widest - len(row)) for row in table], device=device)
    if len(caches) == 1:
        return Segment(start, 1, 1, blocks, lengths[0], None)
    span = torch.arange(widest * pool.block_size, device=device)
    mask = (span[None, :] < torch.tensor(lengths, device=device)[:, None])[:, None, None, :]
    return Segment(start, len(caches), 1, blocks, None, mask)


def step_inputs(
    pool: KVPool,
    chunks: Sequence[tuple[SequenceCache, int, int]],
    decoding: Sequence[SequenceCache],
    device: torch.device,
) -> StepInputs:
    """The inputs of a step: the positions `start:stop` of each chunk's cache, in order, then one position per
    decoding cache."""
    positions: list[int] = []
    slots: list[int] = []
    segments = []
    for cache, start, stop in chunks:
        segments.append(chunk_segment(pool, cache, start, stop, len(positions), device))
        positions += range(start, stop)
        slots += pool.slots(cache, start, stop)
    if decoding and device.type == "cpu":
        start = len(positions)
        segments += [
            chunk_segment(pool, cache, cache.length, cache.length + 1, start + row, device)
            for row, cache in enumerate(decoding)
        ]
    elif decoding:
        segments.append(decode_segment(pool, decoding, len(positions), device))
    if decoding:
        for cache in decoding:
            positions.append(cache.length)
            slots += pool.slots(cache, cache.length, cache.length + 1)
    return StepInputs(torch.tensor([positions], device=device), torch.tensor(slots, device=device), segments)


@dataclass(frozen=True)
class PagedStep:
    """What `paged_attention` needs besides the model's tensors: the pool and the step's inputs."""

    pool: KVPool
    inputs: StepInputs


class PagedAttentionCache:
    """What the model's attention layers take as their cache in a step: it writes the new keys and values
    into their pool slots (duck-typed to transformers' `Cache.update`; the layers call nothing else when
    positions and the mask are given). Reading them back is `paged_attention`'s."""

    def __init__(self, step: PagedStep) -> None:
        self._step = step

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, kwargs: Any = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions' keys and values (`[1, heads, tokens, dim]`); return them as they are."""
        pool, slots = self._step.pool, self._step.inputs.write_slots
        _, heads, _, dim = key_states.shape
        for pool_part, new in zip(pool.layer(layer_idx), (key_states, value_states), strict=True):
            pool_part.view(heads, -1, dim).index_copy_(1, slots, new[0])
        return key_states, value_states


def paged_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of a step's flat sequence (`query` `[1, heads, tokens, dim]`), segment by segment over the
    pool; transformers' SDPA when the forward is not a step. Returns `[1, tokens, heads, dim]`."""
    step: PagedStep | None = kwargs.pop("aural_step", None)
    if step is None:
        output: tuple[torch.Tensor, None] = sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
        return output
    layer: int = module.layer_idx  # type: ignore[assignment]
    keys, values = step.pool.layer(layer)
    _, heads, _, dim = query.shape
    grouped = getattr(module, "num_key_value_groups", 1) > 1  # fewer key/value heads than query heads
    outputs = []
    for segment in step.inputs.segments:
        length = segment.rows * segment.width
        q = query[0, :, segment.start : segment.start + length].view(heads, segment.rows, segment.width, dim)
        k, v = (
            _gather(step.pool, keys, values, segment)
            if segment.run_start is None
            else _in_place(step.pool, keys, values, segment)
        )
        out = nn.functional.scaled_dot_product_attention(
            q.transpose(0, 1), k, v, attn_mask=segment.mask, dropout_p=0.0, scale=scaling, enable_gqa=grouped
        )
        outputs.append(out.transpose(1, 2).reshape(length, heads, dim))
    return torch.cat(outputs)[None], None


def _gather(
    pool: KVPool, keys: torch.Tensor, values: torch.Tensor, segment: Segment
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's keys and values over its blocks, `[rows, heads, read positions, dim]`."""
    blocks = segment.read_blocks.view(-1)
    buffers = pool.gather_buffers(blocks.numel())
    gathered = []
    for part, pool_part in enumerate((keys, values)):
        read = (
            pool_part.index_select(1, blocks)
            if buffers is None
            else torch.index_select(pool_part, 1, blocks, out=buffers[part])
        )
        heads, _, _, dim = read.shape
        read = read.view(heads, segment.rows, -1, dim)
        if segment.read_length is not None:
            read = read[:, :, : segment.read_length]
        gathered.append(read.transpose(0, 1))
    return gathered[0], gathered[1]


def _in_place(
    pool: KVPool, keys: torch.Tensor, values: torch.Tensor, segment: Segment
) -> tuple[torch.Tensor, torch.Tensor]:
    """The keys and values of a one-row segment whose blocks are one run, as views of the pool,
    `[1, heads, read positions, dim]`."""
    assert segment.run_start is not None and segment.read_length is not None
    first, length = segment.run_start, segment.read_length
    run = slice(first, first + pool.blocks_for(length))
    heads, _, _, dim = keys.shape
    return (
        keys[:, run].reshape(heads, -1, dim)[None, :, :length],
        values[:, run].reshape(heads, -1, dim)[None, :, :length],
    )


AttentionInterface.register(ATTENTION, paged_attention)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)
