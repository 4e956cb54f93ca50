"""Steps of a transformers decoder language model over the paged KV pool.

A step feeds one token to each decoding conversation and the prefill chunks of others, in one forward
(`paged`): the weights are read once for all of them, and a chunk never leaves the decoding conversations
waiting for a step of their own. The model's own classes run unchanged, with the attention
implementation `paged.ATTENTION`. A step with decode rows only replays a captured CUDA graph of the bucket
that fits it on CUDA (`DecodeGraphs`), so that it costs the device's time rather than Python's; steps
with a chunk, and every step on the CPU, run eagerly.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .graphs import DecodeGraphs
from .kv_pool import KVPool, SequenceCache
from .paged import ATTENTION, PagedAttentionCache, PagedStep, StepInputs, step_inputs


@dataclass
class Chunk:
    """A prefill chunk to run in a step: input embeddings (`[positions, hidden]`) for positions
    `start:start + len(embeds)` of `cache` (blocks reserved)."""

    cache: SequenceCache
    start: int
    embeds: torch.Tensor

    @property
    def stop(self) -> int:
        return self.start + len(self.embeds)


class ModelRunner:
    """The language model's steps over the pool.

    Args:
        language_model: the decoder stack (`inputs_embeds`, `position_ids`, `attention_mask`, `cache`); its
            attention implementation becomes `paged.ATTENTION` (SDPA whenever it runs outside a step).
        lm_head: hidden states → logits.
        embeddings: token ids → input embeddings.
        pool: where every conversation's cache lives.
        cuda_graphs: capture decode-only steps as CUDA graphs (only on a CUDA device).
    """

    def __init__(
        self,
        language_model: nn.Module,
        lm_head: nn.Module,
        embeddings: nn.Module,
        pool: KVPool,
        *,
        cuda_graphs: bool = True,
    ) -> None:
        language_model.set_attn_implementation(ATTENTION)  # type: ignore[operator]
        self.language_model = language_model
        self.lm_head = lm_head
        self.embeddings = embeddings
        self.pool = pool
        self.device = pool.device
        self.graphs = DecodeGraphs(self) if cuda_graphs and self.device.type == "cuda" else None

    def embed(self, ids: Sequence[int]) -> torch.Tensor:
        """Input embeddings `[len(ids), hidden]`."""
        embeds: torch.Tensor = self.embeddings(torch.tensor(list(ids), device=self.device))
        return embeds

    def forward(self, embeds: torch.Tensor, inputs: StepInputs) -> torch.Tensor:
        """Hidden states `[tokens, hidden]` of a step's flat sequence (`embeds` `[tokens, hidden]`); the new
        positions' keys and values go to the pool."""
        step = PagedStep(self.pool, inputs)
        out = self.language_model(
            inputs_embeds=embeds[None],
            position_ids=inputs.positions,
            attention_mask={"full_attention": None},
            cache=PagedAttentionCache(step),
            use_cache=True,
            aural_step=step,
        )
        hidden: torch.Tensor = out.last_hidden_state[0]
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits (float32) for hidden states `[rows, hidden]`."""
        logits: torch.Tensor = self.lm_head(hidden).float()
        return logits

    @torch.inference_mode()
    def step(
        self, tokens: Sequence[int], caches: Sequence[SequenceCache], chunks: Sequence[Chunk] = ()
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Feed `tokens[i]` after the last position of `caches[i]`, and `chunks` (each a different cache's), in
        one forward (blocks reserved).

        Returns:
            The decode rows' next-token logits (`[rows, vocab]`, None without rows), and the logits after each
            chunk's last position (`[chunks, vocab]`, None without chunks).
        """
        if not chunks and not tokens:
            return None, None
        if not chunks and self.graphs is not None:
            logits = self.graphs.decode(list(tokens), list(caches))
            if logits is not None:
                return logits, None
        spans = [(chunk.cache, chunk.start, chunk.stop) for chunk in chunks]
        inputs = step_inputs(self.pool, spans, caches, self.device)
        parts = [chunk.embeds for chunk in chunks] + ([self.embed(tokens)] if tokens else [])
        hidden = self.forward(torch.cat(parts) if len(parts) > 1 else parts[0], inputs)
        ends = list(itertools.accumulate(len(chunk.embeds) for chunk in chunks))
        width = ends[-1] if ends else 0
        logits = self.logits(hidden[[end - 1 for end in ends] + list(range(width, width + len(tokens)))])
        rows, last = logits[len(chunks) :], logits[: len(chunks)]
        return (rows if tokens else None), (last if chunks else None)
