"""Forward passes of a transformers decoder language model over the paged KV pool.

The model's own classes run unchanged: `PagedAttentionCache` stands in for its cache and the mask is
handed over ready-made, so its attention layers read and write the pool. A decode step feeds one token
per conversation in one batch; on CUDA it replays a captured graph of the bucket that fits the batch
(`DecodeGraphs`), so that a step costs the device's time rather than Python's; on the CPU it runs eagerly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .graphs import DecodeGraphs
from .kv_pool import KVPool, SequenceCache
from .paged import BatchInputs, PagedAttentionCache, chunk_inputs, decode_inputs


class ModelRunner:
    """The language model's forward over the pool.

    Args:
        language_model: the decoder stack (`inputs_embeds`, `position_ids`, `attention_mask`, `cache`).
        lm_head: hidden states → logits.
        embeddings: token ids → input embeddings.
        pool: where every conversation's cache lives.
        cuda_graphs: capture decode steps as CUDA graphs (only on a CUDA device).
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

    def forward(self, embeds: torch.Tensor, inputs: BatchInputs) -> torch.Tensor:
        """Hidden states `[rows, width, hidden]` of the new positions; their keys and values go to the pool."""
        out = self.language_model(
            inputs_embeds=embeds,
            position_ids=inputs.positions,
            attention_mask={"full_attention": inputs.mask},
            cache=PagedAttentionCache(self.pool, inputs),
            use_cache=True,
        )
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits (float32) for hidden states `[rows, hidden]`."""
        logits: torch.Tensor = self.lm_head(hidden).float()
        return logits

    @torch.inference_mode()
    def prefill(self, embeds: torch.Tensor, cache: SequenceCache, start: int) -> torch.Tensor:
        """Positions `start:start + len(embeds)` of one cache (blocks reserved); the last position's logits."""
        inputs = chunk_inputs(self.pool, cache, start, start + len(embeds), self.device)
        hidden = self.forward(embeds[None], inputs)
        return self.logits(hidden[0, -1:])[0]

    @torch.inference_mode()
    def decode(self, tokens: list[int], caches: list[SequenceCache]) -> torch.Tensor:
        """One token per cache, after each cache's last position (blocks reserved): logits `[rows, vocab]`."""
        if self.graphs is not None:
            logits = self.graphs.decode(tokens, caches)
            if logits is not None:
                return logits
        inputs = decode_inputs(self.pool, caches, self.device)
        embeds = self.embed(tokens)[:, None]
        return self.logits(self.forward(embeds, inputs)[:, -1])
