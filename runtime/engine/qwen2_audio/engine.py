"""The transformers implementation of the engine interface, for Qwen2-Audio: many conversations on one device.

Every session's cache lives in blocks of one paged KV pool (`batching.kv_pool`), with the key of every
position in it. A reply renders the conversation to ids (only the segments that changed since the last
rendering are tokenized again), keeps the longest prefix the cache already holds, crops the rest,
encodes only the audio clips past that point, prefills only the new positions in bounded units, and
then decodes in one batch with every other conversation's reply (`batching.scheduler`). A speculative
prefill (while the user is still talking) does the same work ahead of the reply, up to the last
position of the rendering, whose logits the reply then computes. `jobs` holds both units of work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Sequence

import structlog
import torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from ...errors import ContextExceeded
from ..base import (
    DeviceMemory,
    Engine,
    EngineHealth,
    EngineSession,
    EngineStats,
    FunctionSpec,
    Generation,
    Message,
    ModelCapabilities,
    SamplingParams,
    SessionMemory,
    Truncation,
)
from ..batching.kv_pool import KVPool, PoolGeometry, default_budget
from ..batching.residency import Resident
from ..batching.runner import ModelRunner
from ..batching.scheduler import OnFull, Scheduler
from ..detokenizer import TokenText
from ..generation import StreamedGeneration
from ..tool_grammar import Grammars, schema_problem
from .audio_encoder import AudioEncoder
from .chat_format import CLIP_SAMPLES, QwenAudioChatFormat, Rendered, Renderer
from .jobs import ReplyJob, SpeculationJob
from .presets import build_preset
from .settings import PREFILL_CHUNK, PRESETS

log = structlog.get_logger(__name__)

REPLY_ROOM = 512  # context kept free for a reply without max_output_tokens
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """`auto` picks CUDA with bfloat16 when present, else the CPU with float32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return torch.device(device), _DTYPES[dtype]


class TransformersEngine(Engine):
    """Qwen2-Audio on one device, shared by every session through one device loop.

    Args:
        model: the loaded network, on its device.
        processor: its processor (tokenizer and feature extractor).
        model_name: the name clients ask for.
        kv_budget: bytes of KV cache for all conversations (None: `default_budget`).
        on_full: when the pool is full, a request waits for room or fails with `KVBudgetExceeded`.
        idle_offload: seconds after which an idle conversation's cache moves to host memory (None: never).
        host_budget: bytes of offloaded caches kept in host memory (None: as much as the KV budget); past it,
            an evicted conversation's cache is dropped and recomputed at its next turn.
        prefill_chunk: prefill positions a step holds at most, of one conversation or several.
        block_size: positions per pool block.
        cuda_graphs: capture decode steps as CUDA graphs (CUDA only).
        trace: keep this many schedule entries (`scheduler.schedule`), for tests.
    """

    def __init__(
        self,
        model: Qwen2AudioForConditionalGeneration,
        processor: AutoProcessor,
        model_name: str,
        *,
        kv_budget: int | None = None,
        on_full: OnFull = "wait",
        idle_offload: float | None = None,
        host_budget: int | None = None,
        prefill_chunk: int = PREFILL_CHUNK,
        block_size: int = 16,
        cuda_graphs: bool = True,
        trace: int = 0,
    ) -> None:
        self.model = model
        self.model_name = model_name
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.device: torch.device = model.device
        self.chat_format = QwenAudioChatFormat(self.tokenizer)
        self.token_text = TokenText(self.tokenizer)
        layers = model.model.language_model.layers
        position_flops = 2 * sum(parameter.numel() for parameter in layers.parameters())
        self.encoder = AudioEncoder(model, processor.feature_extractor, position_flops)
        text = model.config.text_config
        self.max_context: int = text.max_position_embeddings
        self.prefill_chunk = prefill_chunk
        eos = model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.stop_ids = frozenset(i for i in [*eos_ids, self.chat_format.im_end] if i is not None)
        self.grammars = Grammars(self.tokenizer, text.vocab_size, self.stop_ids)
        # Indexed into the logits every step, so a tensor on the model's device (no per-step copy). Past the
        # tokenizer's ids too: an embedding may have more rows than the tokenizer has tokens (Qwen2-Audio-7B:
        # 156032 for ~151.6k), and an id the tokenizer cannot decode must never be sampled.
        undecodable = range(len(self.tokenizer), model.get_output_embeddings().out_features)
        self.suppressed = torch.tensor([*self.chat_format.suppressed_ids, *undecodable], device=self.device)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        geometry = PoolGeometry(text.num_hidden_layers, text.num_key_value_heads, head_dim, model.dtype)
        budget = kv_budget if kv_budget is not None else default_budget(self.device)
        self.pool = KVPool(geometry, budget, block_size=block_size, device=self.device)
        language_model = model.model.language_model
        self.runner = ModelRunner(
            language_model, model.lm_head, model.get_input_embeddings(), self.pool, cuda_graphs=cuda_graphs
        )
        self.scheduler = Scheduler(
            self.pool,
            self.runner.step,
            prefill_budget=prefill_chunk,
            on_full=on_full,
            idle_offload=idle_offload,
            host_budget=host_budget if host_budget is not None else budget,
            trace=trace,
        )
        self.capabilities = ModelCapabilities(CLIP_SAMPLES, self.max_context, schema_problem)
        log.info(
            "kv pool ready",
            blocks=self.pool.num_blocks,
            block_size=block_size,
            bytes=self.pool.num_blocks * self.pool.bytes_per_block,
            tokens=self.pool.capacity * block_size,
        )

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        kv_budget: int | None = None,
        on_full: OnFull = "wait",
        idle_offload: float | None = None,
        host_budget: int | None = None,
        prefill_chunk: int = PREFILL_CHUNK,
        cuda_graphs: bool = True,
        trace: int = 0,
    ) -> TransformersEngine:
        """Load a preset (`tiny`, `medium`, `7b-random`), a hub id or a local folder; blocking, call off the loop.
        The other arguments are the engine's (see the class)."""
        torch_device, torch_dtype = resolve_device(device, dtype)
        if model in PRESETS:
            network, processor = build_preset(model, device=torch_device, dtype=torch_dtype)
        else:
            processor = AutoProcessor.from_pretrained(model)
            network = Qwen2AudioForConditionalGeneration.from_pretrained(model, dtype=torch_dtype)
        network = network.to(device=torch_device, dtype=torch_dtype).eval()
        log.info("model loaded", model=model, device=str(torch_device), dtype=str(torch_dtype))
        return cls(
            network,
            processor,
            model_name=model,
            kv_budget=kv_budget,
            on_full=on_full,
            idle_offload=idle_offload,
            host_budget=host_budget,
            prefill_chunk=prefill_chunk,
            cuda_graphs=cuda_graphs,
            trace=trace,
        )

    async def open_session(self, memory: SessionMemory | None = None) -> TransformersSession:
        session = TransformersSession(self, memory or SessionMemory())
        await self.scheduler.call(lambda: self.scheduler.add(session.resident))
        return session

    def health(self) -> EngineHealth:
        return EngineHealth()

    async def close(self) -> None:
        await asyncio.to_thread(self.shutdown)

    def shutdown(self) -> None:
        """Stop the device loop (blocking): what is queued is abandoned."""
        self.scheduler.shutdown()

    def device_memory(self) -> DeviceMemory | None:
        if self.device.type != "cuda":
            return None
        _, total = torch.cuda.mem_get_info(self.device)
        allocated, reserved = torch.cuda.memory_allocated(self.device), torch.cuda.memory_reserved(self.device)
        return DeviceMemory(allocated=allocated, reserved=reserved, total=total)

    def stats(self) -> EngineStats:
        residents = list(self.scheduler.residents)
        return EngineStats(
            block_size=self.pool.block_size,
            blocks_total=self.pool.capacity,
            blocks_used=self.pool.capacity - self.pool.free_blocks,
            bytes_per_block=self.pool.bytes_per_block,
            conversations_resident=sum(1 for resident in residents if resident.cache.blocks),
            conversations_offloaded=sum(1 for resident in residents if resident.cache.offloaded),
        )


class TransformersSession(EngineSession):
    """One conversation's cache and what it was rendered from, starting from `memory` (an empty cache either
    way). Its state is touched on the device thread only, by one job at a time (the scheduler runs a session's
    jobs in order)."""

    def __init__(self, engine: TransformersEngine, memory: SessionMemory) -> None:
        self.engine = engine
        self.resident = Resident()
        self.generated: dict[str, list[int]] = {key: list(ids) for key, ids in memory.replies.items()}
        self.wanted = 0  # requests for this cache so far: a speculative prefill runs only while it is the latest
        self._renderer = Renderer(engine.chat_format)
        self.window: str | None = memory.window  # the key of the first message kept after a truncation

    def generate(self, conversation: Sequence[Message], reply_key: str, params: SamplingParams) -> Generation:
        self.wanted += 1
        generation = StreamedGeneration(asyncio.get_running_loop())
        self.engine.scheduler.submit(ReplyJob(self, list(conversation), reply_key, params, generation))
        return generation

    async def prefill(
        self, conversation: Sequence[Message], tools: Sequence[FunctionSpec] = (), truncation: Truncation | None = None
    ) -> None:
        self.wanted += 1  # a prefill still running for an older request stops at its next step
        done = asyncio.get_running_loop().create_future()
        job = SpeculationJob(self, list(conversation), tuple(tools), truncation or Truncation(), self.wanted, done)
        self.engine.scheduler.submit(job)
        try:
            await done
        except asyncio.CancelledError:
            if self.wanted == job.ticket:
                self.wanted += 1  # superseded by nothing: it stops at its next step
            raise

    async def close(self) -> None:
        await self.engine.scheduler.call(self._release)

    def _release(self) -> None:
        self.engine.scheduler.remove(self.resident)
        self.generated.clear()

    @property
    def keys(self) -> list[Hashable]:
        """The key of every cached position."""
        return self.resident.cache.keys

    def reply_room(self, max_tokens: int | None) -> int:
        """The context a reply keeps free: its `max_tokens`, or a share of the context."""
        return max_tokens or min(REPLY_ROOM, self.engine.max_context // 8)

    def render_within(
        self,
        conversation: Sequence[Message],
        room: int,
        tools: Sequence[FunctionSpec] = (),
        truncation: Truncation | None = None,
    ) -> Rendered:
        """Render `conversation` (with `tools`), leaving `room` tokens of the context for the reply.

        A conversation that outgrows its limit is cut as `truncation` says (see `Truncation`): the cut
        then stays at the same message until the conversation outgrows the limit again, so the turns in
        between reuse the cache instead of re-prefilling.

        Raises:
            ContextExceeded: truncation is disabled and the conversation does not fit, or even the last
                message alone does not fit.
        """
        truncation = truncation or Truncation()
        head = list(conversation[:1]) if conversation and conversation[0].role == "system" else []
        body = list(conversation[len(head) :])
        limit = self.engine.max_context - room
        keys = [message.key for message in body]
        start = keys.index(self.window) if self.window in keys else 0
        rendered = self._render([*head, *body[start:]], tools)
        post_limit = min(limit - rendered.system_tokens, truncation.post_instructions or limit)
        if len(rendered.ids) - rendered.system_tokens <= post_limit:
            return rendered
        if truncation.mode == "disabled":
            raise ContextExceeded(
                f"The conversation needs {len(rendered.ids)} tokens with the reply's room; the limit is {limit} "
                "and truncation is disabled."
            )
        target = truncation.retention_ratio * post_limit
        offset = len(head) - start  # rendered message index → body index
        for first, position in rendered.starts:
            cut = first - offset
            if cut <= start or not body[cut].key or len(rendered.ids) - position > target:
                continue
            candidate = self._render([*head, *body[cut:]], tools)
            if len(candidate.ids) - candidate.system_tokens <= post_limit:
                self.window = body[cut].key
                log.info("conversation truncated", dropped=cut, kept=len(body) - cut, tokens=len(candidate.ids))
                return candidate
        raise ContextExceeded(
            f"The last message needs {len(rendered.ids) - rendered.starts[-1][1]} tokens besides the system turn "
            f"and the reply's room; the model's context holds {self.engine.max_context}."
            if rendered.starts
            else f"The system turn alone needs {len(rendered.ids)} tokens; the limit is {limit}."
        )

    def _render(self, messages: Sequence[Message], tools: Sequence[FunctionSpec]) -> Rendered:
        return self._renderer.render(messages, self.generated.get, tools)

    def reuse(self, keys: Sequence[Hashable], limit: int) -> int:
        """Crop the cache to its longest prefix shared with `keys` (at most `limit`); return its length."""
        cache = self.resident.cache
        common = _common_prefix(cache.keys, keys, limit)
        self.engine.pool.crop(cache, common)
        return common


def _common_prefix(a: Sequence[Hashable], b: Sequence[Hashable], limit: int) -> int:
    n = min(len(a), len(b), limit)
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])
