"""The transformers implementation of the engine interface, for Qwen2-Audio.

Each session keeps a `DynamicCache` on the device and the key of every position in it. A reply renders
the conversation to ids, keeps the longest prefix the cache already holds, crops the rest, encodes
only the audio clips past that point, prefills only the new tokens and decodes one token per device
step. The last sampled token of a reply is not fed to the model; the next rendering, which contains
it, prefills it. A speculative prefill (while the user is still talking) does the same work ahead of
the reply, up to the last position of the rendering, whose logits the reply then computes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import structlog
import torch
from transformers import AutoProcessor, DynamicCache, Qwen2AudioForConditionalGeneration

from ...errors import ContextExceeded, EngineError, GrammarError, ModelFailure
from ..base import (
    Engine,
    EngineHealth,
    EngineSession,
    FinishReason,
    FunctionSpec,
    Generation,
    GenerationDone,
    Message,
    ModelCapabilities,
    SamplingParams,
    TokenUsage,
)
from ..reply import ReplyReader
from ..tool_grammar import Grammars, schema_problem
from ..worker import DeviceWorker, StateLock, StreamedGeneration
from .audio_encoder import AudioEncoder
from .chat_format import CLIP_SAMPLES, QwenAudioChatFormat, Rendered
from .presets import PRESETS, build_preset

log = structlog.get_logger(__name__)

REPLY_ROOM = 512  # context kept free for a reply without max_output_tokens
RETAIN = 0.75  # share of the context a truncated conversation fills
CALL_TOKENS = 1024  # a function call longer than this is cut off (and reported as an error, never as a call)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """`auto` picks CUDA with bfloat16 when present, else the CPU with float32."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    return torch.device(device), _DTYPES[dtype]


class TransformersEngine(Engine):
    """Qwen2-Audio on one device, shared by every session through one device worker."""

    def __init__(self, model: Qwen2AudioForConditionalGeneration, processor: AutoProcessor, model_name: str) -> None:
        self.model = model
        self.model_name = model_name
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.chat_format = QwenAudioChatFormat(self.tokenizer)
        self.encoder = AudioEncoder(model, processor.feature_extractor)
        self.max_context: int = model.config.text_config.max_position_embeddings
        eos = model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.stop_ids = frozenset(i for i in [*eos_ids, self.chat_format.im_end] if i is not None)
        self.grammars = Grammars(self.tokenizer, model.config.text_config.vocab_size, self.stop_ids)
        # Indexed into the logits every step, so a tensor on the model's device (no per-step copy). Past the
        # tokenizer's ids too: an embedding may have more rows than the tokenizer has tokens (Qwen2-Audio-7B:
        # 156032 for ~151.6k), and an id the tokenizer cannot decode must never be sampled.
        undecodable = range(len(self.tokenizer), model.get_output_embeddings().out_features)
        self.suppressed = torch.tensor([*self.chat_format.suppressed_ids, *undecodable], device=model.device)
        self.worker = DeviceWorker()
        self.capabilities = ModelCapabilities(CLIP_SAMPLES, self.max_context, schema_problem)

    @classmethod
    def load(cls, model: str, *, device: str = "auto", dtype: str = "auto") -> TransformersEngine:
        """Load a preset (`tiny`, `medium`, `7b-random`), a hub id or a local folder; blocking, call off the loop."""
        torch_device, torch_dtype = resolve_device(device, dtype)
        if model in PRESETS:
            network, processor = build_preset(model, device=torch_device, dtype=torch_dtype)
        else:
            processor = AutoProcessor.from_pretrained(model)
            network = Qwen2AudioForConditionalGeneration.from_pretrained(model, dtype=torch_dtype)
        network = network.to(device=torch_device, dtype=torch_dtype).eval()
        log.info("model loaded", model=model, device=str(torch_device), dtype=str(torch_dtype))
        return cls(network, processor, model_name=model)

    async def open_session(self) -> TransformersSession:
        return TransformersSession(self)

    def health(self) -> EngineHealth:
        return EngineHealth()

    async def close(self) -> None:
        await asyncio.to_thread(self.worker.shutdown)


class TransformersSession(EngineSession):
    """One conversation's cache. Its state is touched only on the device thread, by one job at a time
    (`lock`): a generation holds it from its first step to its last."""

    def __init__(self, engine: TransformersEngine) -> None:
        self.engine = engine
        self.cache: DynamicCache | None = None
        self.keys: list[Hashable] = []  # one per cached position
        self.generated: dict[str, list[int]] = {}
        self.closed = False
        self.lock = StateLock()
        self.wanted = 0  # requests for this cache so far: a speculative prefill runs only while it is the latest

    def generate(self, conversation: Sequence[Message], reply_key: str, params: SamplingParams) -> Generation:
        self.wanted += 1
        generation = StreamedGeneration(asyncio.get_running_loop())
        self.engine.worker.start(_GenerationJob(self, list(conversation), reply_key, params, generation))
        return generation

    async def prefill(self, conversation: Sequence[Message], tools: Sequence[FunctionSpec] = ()) -> None:
        self.wanted += 1  # a prefill still running for an older request stops at its next step
        done = asyncio.get_running_loop().create_future()
        self.engine.worker.start(_SpeculationJob(self, list(conversation), tuple(tools), self.wanted, done))
        await done

    async def close(self) -> None:
        await self.engine.worker.call(self._release)

    def _release(self) -> None:
        self.closed = True
        self.reset()
        self.generated.clear()

    def render_within(self, conversation: Sequence[Message], room: int, tools: Sequence[FunctionSpec] = ()) -> Rendered:
        """Render `conversation` (with `tools`), leaving `room` tokens of the context for the reply.

        When it does not fit, the oldest turns are dropped (never the system turn), down to
        `RETAIN` of the context, like OpenAI's `truncation: "auto"`: dropping more than the minimum
        lets the next turns reuse the cache instead of re-prefilling after every drop.

        Raises:
            ContextExceeded: even the last message alone does not fit.
        """

        def render(messages: Sequence[Message], generated: Callable[[str], Sequence[int] | None]) -> Rendered:
            return self.engine.chat_format.render(messages, generated, tools)

        rendered = render(conversation, self.generated.get)
        limit = self.engine.max_context - room
        if len(rendered.ids) <= limit:
            return rendered
        head = list(conversation[:1]) if conversation and conversation[0].role == "system" else []
        fitting: Rendered | None = None
        for start in range(len(head) + 1, len(conversation)):
            rendered = render([*head, *conversation[start:]], self.generated.get)
            if len(rendered.ids) <= limit:
                fitting = fitting or rendered
                if len(rendered.ids) <= RETAIN * limit:
                    return rendered
        if fitting is None:
            raise ContextExceeded(
                f"The last message needs {len(rendered.ids)} tokens with the system turn and the reply's room; "
                f"the model's context holds {self.engine.max_context}."
            )
        return fitting

    def reset(self) -> None:
        """Forget the cache (after a failure mid-forward, whose state cannot be trusted)."""
        self.cache, self.keys = None, []

    # --- device-thread operations ------------------------------------------------------------------

    @torch.inference_mode()
    def extend(self, rendered: Rendered) -> tuple[torch.Tensor, int]:
        """Bring the cache to `rendered`; return the next-token logits and the reused prefix length."""
        self._check_fits(rendered)
        common = self._reuse(rendered.keys, limit=len(rendered.ids) - 1)  # at least one position gives logits
        return self._append(rendered, common, len(rendered.ids)), common

    def _check_fits(self, rendered: Rendered) -> None:
        limit = self.engine.max_context
        if len(rendered.ids) >= limit:
            raise ContextExceeded(
                f"The conversation needs {len(rendered.ids)} tokens; the model's context holds {limit}."
            )

    def _reuse(self, keys: Sequence[Hashable], limit: int) -> int:
        """Crop the cache to its longest prefix shared with `keys` (at most `limit`); return its length."""
        common = _common_prefix(self.keys, keys, limit)
        if common == 0 or self.cache is None:
            self.cache, common = DynamicCache(config=self.engine.model.config.text_config), 0
        elif len(self.keys) > common:
            self.cache.crop(common - len(self.keys))
        self.keys = self.keys[:common]
        return common

    def _append(self, rendered: Rendered, start: int, stop: int) -> torch.Tensor:
        """Prefill positions `start:stop` of `rendered` after a cache of `start`; return the last logits."""
        engine = self.engine
        ids = torch.tensor([rendered.ids[start:stop]], device=engine.model.device)
        embeds = engine.model.get_input_embeddings()(ids)
        for clip in rendered.clips:
            end = clip.start + clip.length
            if end <= start or clip.start >= stop:
                continue
            first = max(clip.start, start)
            audio = engine.encoder.encode(clip.samples)
            embeds[0, first - start : end - start] = audio[first - clip.start :].to(embeds.dtype)
        logits = self._forward(embeds)
        self.keys = list(rendered.keys[:stop])
        return logits

    @torch.inference_mode()
    def feed(self, tokens: Sequence[int]) -> torch.Tensor:
        """Append tokens to the cache in one pass; return the next-token logits."""
        model = self.engine.model
        embeds = model.get_input_embeddings()(torch.tensor([list(tokens)], device=model.device))
        logits = self._forward(embeds)
        self.keys.extend(tokens)
        return logits

    def _forward(self, embeds: torch.Tensor) -> torch.Tensor:
        model = self.engine.model
        out = model.model.language_model(inputs_embeds=embeds, cache=self.cache, use_cache=True)
        logits: torch.Tensor = model.lm_head(out.last_hidden_state[0, -1]).float()
        return logits


def reply_room(engine: TransformersEngine, max_tokens: int | None) -> int:
    """The context a reply keeps free: its `max_tokens`, or a share of the context."""
    return max_tokens or min(REPLY_ROOM, engine.max_context // 8)


def _common_prefix(a: Sequence[Hashable], b: Sequence[Hashable], limit: int) -> int:
    n = min(len(a), len(b), limit)
    if a[:n] == b[:n]:
        return n
    return next(i for i in range(n) if a[i] != b[i])


@dataclass
class _Progress:
    usage: TokenUsage
    pending: list[int] | None = None  # sampled (and then forced by the grammar), not yet fed
    count: int = 0


class _SpeculationJob:
    """A speculative prefill, run one audio clip at a time: it brings the cache to all of the rendering but
    its last position (which the reply feeds) and stops early, cache consistent, once a newer request for
    the session (another prefill, a reply) supersedes it. Failures are logged, never raised."""

    def __init__(
        self,
        session: TransformersSession,
        conversation: list[Message],
        tools: tuple[FunctionSpec, ...],
        ticket: int,
        done: asyncio.Future[None],
    ) -> None:
        self.session = session
        self.conversation = conversation
        self.tools = tools
        self.ticket = ticket
        self.done = done
        self.rendered: Rendered | None = None
        self.position = 0

    @torch.inference_mode()
    def step(self) -> bool:
        session = self.session
        if not session.lock.acquire(self):
            return True  # a reply of this session runs: wait for it
        try:
            if session.closed or session.wanted != self.ticket:
                return self._end()
            if self.rendered is None:
                self.rendered = session.render_within(self.conversation, reply_room(session.engine, None), self.tools)
                session._check_fits(self.rendered)
                stop = len(self.rendered.ids) - 1
                self.position = session._reuse(self.rendered.keys[:stop], limit=stop)
            stop = len(self.rendered.ids) - 1
            ends = [clip.start + clip.length for clip in self.rendered.clips]
            until = min([end for end in ends if end > self.position] + [stop])
            if self.position < until:
                session._append(self.rendered, self.position, until)
                self.position = until
            return self.position < stop or self._end()
        except ContextExceeded as exc:
            log.info("speculative prefill skipped", reason=str(exc))
        except Exception:
            log.exception("speculative prefill failed")
            session.reset()
        return self._end()

    def _end(self) -> bool:
        self.session.lock.release(self)
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody awaits
            self.done.get_loop().call_soon_threadsafe(_settle, self.done)
        return False


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _GenerationJob:
    """One reply, run by the device worker one step at a time."""

    def __init__(
        self,
        session: TransformersSession,
        conversation: list[Message],
        reply_key: str,
        params: SamplingParams,
        out: StreamedGeneration,
    ) -> None:
        self.session = session
        self.conversation = conversation
        self.reply_key = reply_key
        self.params = params
        self.out = out
        self.reply: ReplyReader | None = None
        self.progress: _Progress | None = None
        self.generator: torch.Generator | None = None

    @torch.inference_mode()
    def step(self) -> bool:
        session = self.session
        if self.out.cancelled.is_set() or session.closed:
            return self._finish("cancelled")
        if not session.lock.acquire(self):
            return True  # a job queued before this one still uses the cache
        try:
            if self.progress is None:
                logits = self._start()
            else:
                assert self.progress.pending is not None
                logits = session.feed(self.progress.pending)
            return self._advance(self._sample(logits))
        except ContextExceeded as exc:
            return self._finish("error", exc)
        except GrammarError as exc:
            return self._finish("error", GrammarError(f"The tools' grammar failed: {exc}"))
        except Exception:
            log.exception("generation failed", reply=self.reply_key)
            session.reset()
            return self._finish("error", ModelFailure("The model failed while generating this response."))

    def _start(self) -> torch.Tensor:
        session, engine = self.session, self.session.engine
        tools = self.params.tools
        room = reply_room(engine, self.params.max_tokens)
        rendered = session.render_within(self.conversation, room, tools.functions if tools else ())
        logits, cached = session.extend(rendered)
        session.generated[self.reply_key] = []
        self.reply = ReplyReader(engine.tokenizer, tools, engine.chat_format.tool_format, engine.grammars)
        usage = TokenUsage(input_tokens=len(rendered.ids), cached_tokens=cached, audio_tokens=rendered.audio_tokens)
        self.progress = _Progress(usage)
        if self.params.temperature > 0:
            self.generator = torch.Generator(device=engine.model.device)
            self.generator.manual_seed(self.params.seed if self.params.seed is not None else torch.seed())
        return logits

    def _sample(self, logits: torch.Tensor) -> int:
        logits[self.session.engine.suppressed] = float("-inf")
        allowed = self.reply.allowed() if self.reply is not None else None
        if allowed is not None:  # the tools' grammar: a plain unpacked mask, nothing compiled
            logits[: allowed.size][~torch.from_numpy(allowed)] = float("-inf")
            logits[allowed.size :] = float("-inf")
        if self.params.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / self.params.temperature, dim=-1)
        if self.params.top_p < 1.0:
            sorted_probs, order = torch.sort(probs, descending=True)
            outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs > self.params.top_p
            sorted_probs[outside] = 0.0
            probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def _advance(self, token: int) -> bool:
        progress, session = self.progress, self.session
        assert progress is not None
        if token in session.engine.stop_ids:
            return self._finish("stop")
        progress.pending = []
        if not self._take(token):
            return self._finish("length")
        for forced in self._forced():  # computed once the sampled token is in the grammar
            if not self._take(forced):
                return self._finish("length")
        return True

    def _take(self, token: int) -> bool:
        """Add a token to the reply (fed with the next step); False when the reply is at a limit."""
        assert self.progress is not None and self.progress.pending is not None and self.reply is not None
        self.session.generated[self.reply_key].append(token)
        self.progress.count += 1
        self.progress.pending.append(token)
        for event in self.reply.push(token):
            self.out.push_threadsafe(event)
        return not self._at_limit()

    def _forced(self) -> list[int]:
        """Tokens the grammar forces after the sampled one, up to the first stop id (a stop ends the reply
        through sampling, as usual)."""
        assert self.reply is not None
        forced = self.reply.forced()
        stops = [i for i, token in enumerate(forced) if token in self.session.engine.stop_ids]
        return forced[: stops[0]] if stops else forced

    def _at_limit(self) -> bool:
        assert self.progress is not None and self.reply is not None
        at_limit = self.params.max_tokens is not None and self.progress.count >= self.params.max_tokens
        room = len(self.session.keys) + len(self.progress.pending or []) >= self.session.engine.max_context
        return at_limit or self.reply.call_tokens >= CALL_TOKENS or room

    def _finish(self, reason: FinishReason, error: EngineError | None = None) -> bool:
        self.session.lock.release(self)
        if self.reply is not None:
            events, keep = self.reply.finish()
            for event in events:
                self.out.push_threadsafe(event)
            reply_ids = self.session.generated.get(self.reply_key)
            if reply_ids is not None:
                del reply_ids[keep:]  # a call cut off is no part of the reply
        usage = TokenUsage()
        if self.progress is not None:
            base = self.progress.usage
            usage = TokenUsage(base.input_tokens, base.cached_tokens, base.audio_tokens, self.progress.count)
        self.out.push_threadsafe(GenerationDone(reason, usage, error))
        return False
