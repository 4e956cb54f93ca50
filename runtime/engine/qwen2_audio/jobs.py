"""The model work the device loop runs for a session: a reply and a speculative prefill.

Both bring the session's cache to a rendering of the conversation through a `Prefill`: the longest
prefix the cache already holds is kept, the rest is cropped, and what remains goes through the model in
chunks as long as the step's prefill budget leaves room for (the audio clips a chunk holds encoded on their
real frames first, a part of the encoder at a time from the same budget, over several steps when a clip
is long), each in a step shared with the other conversations' decode rows and chunks. A reply
then samples its first token from the prefill's last logits and joins the decode rows; tokens a tools'
grammar forces after a sampled one are fed as chunks of their own. The last sampled token of a reply is
never fed: the next rendering, which contains it, prefills it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import TYPE_CHECKING

import structlog
import torch

from ...errors import CallTooLong, ContextExceeded, EngineError, GrammarError, KVBudgetExceeded, ModelFailure
from ..base import FinishReason, FunctionSpec, GenerationDone, Message, SamplingParams, TokenUsage, Truncation
from ..batching.runner import Chunk
from ..batching.scheduler import Budget, Job, Phase
from ..generation import StreamedGeneration
from ..reply import ReplyReader
from .audio_encoder import ClipEncoding
from .chat_format import Rendered

if TYPE_CHECKING:
    from .engine import TransformersSession

log = structlog.get_logger(__name__)

CALL_TOKENS = 1024
"""A function call longer than this is cut off and reported as `CallTooLong`, never sent as a call: it bounds
the grammar's work per call whatever `max_output_tokens` allows (by default, no limit)."""


class Prefill:
    """Brings a session's cache to positions `:stop` of `rendered`, chunk by chunk. With `logits`, at least the
    last position is computed, whatever the cache holds: its logits are the reply's first token's."""

    def __init__(self, session: TransformersSession, rendered: Rendered, stop: int, *, logits: bool) -> None:
        self.session = session
        self.rendered = rendered
        self.stop = stop
        self.position = session.reuse(rendered.keys, limit=stop - 1 if logits else stop)
        self.cached = self.position
        self._encoded: dict[int, ClipEncoding] = {}  # clip index → its encoding, begun

    @property
    def done(self) -> bool:
        return self.position >= self.stop

    def prepare(self, budget: Budget) -> Chunk | None:
        """The next chunk, as long as `budget` leaves room for once the audio clips it reaches are encoded (a part
        of the encoder at a time, while room is left), its blocks reserved; None when the room went to
        encoding (the next steps go on).

        Raises:
            PoolFull: the chunk's positions need blocks that are not free (no position was computed).
        """
        engine, cache = self.session.engine, self.session.resident.cache
        start = self.position
        end = min(self.stop, start + budget.left)
        for index, clip in enumerate(self.rendered.clips):
            if clip.start + clip.length <= start or clip.start >= end:
                continue
            if index not in self._encoded:
                self._encoded[index] = engine.encoder.start(clip.samples)
            encoding = self._encoded[index]
            while encoding.result is None and budget.left > 0:
                budget.spend(encoding.cost())
                encoding.advance()
            end = min(end, start + max(budget.left, 0))
            if encoding.result is None:
                end = min(end, clip.start)  # the clip's positions wait for the rest of its encoding
        if end <= start:
            return None
        engine.pool.ensure(cache, end)
        budget.spend(end - start)
        embeds = engine.runner.embed(self.rendered.ids[start:end])
        for index, clip in enumerate(self.rendered.clips):
            clip_end = clip.start + clip.length
            if clip_end <= start or clip.start >= end:
                continue
            audio = self._encoded[index].result
            assert audio is not None
            first, last = max(clip.start, start), min(clip_end, end)
            embeds[first - start : last - start] = audio[first - clip.start : last - clip.start].to(embeds.dtype)
        return Chunk(cache, start, embeds)

    def advance(self, chunk: Chunk) -> None:
        """The chunk ran: its positions are cached (and the clips behind them forgotten)."""
        self.session.resident.cache.keys.extend(self.rendered.keys[chunk.start : chunk.stop])
        self.position = chunk.stop
        for index, clip in enumerate(self.rendered.clips):
            if index in self._encoded and clip.start + clip.length <= self.position:
                del self._encoded[index]


class SpeculationJob(Job):
    """A speculative prefill: the cache brought to all of the rendering but its last position (which the
    reply feeds). It stops, cache consistent, as soon as a newer request for the session supersedes it
    (`ticket` is no longer the session's latest); its failures are logged, never raised."""

    def __init__(
        self,
        session: TransformersSession,
        conversation: list[Message],
        tools: tuple[FunctionSpec, ...],
        truncation: Truncation,
        ticket: int,
        done: asyncio.Future[None],
    ) -> None:
        self.session = session
        self.resident = session.resident
        self.conversation = conversation
        self.tools = tools
        self.truncation = truncation
        self.ticket = ticket
        self.done = done
        self.prefill: Prefill | None = None
        self.chunk: Chunk | None = None
        self.finished = False

    def phase(self) -> Phase:
        return "done" if self.finished else "chunk"

    def urgency(self) -> int:
        return 2

    def poll(self) -> None:
        if not self.finished and (self.resident.closed or self.session.wanted != self.ticket):
            self._end()

    def prepare_chunk(self, budget: Budget) -> Chunk | None:
        session = self.session
        if self.prefill is None:
            try:
                room = session.reply_room(None)
                rendered = session.render_within(self.conversation, room, self.tools, self.truncation)
                session.engine.pool.check_fits(len(rendered.ids))
            except (ContextExceeded, KVBudgetExceeded) as exc:
                log.info("speculative prefill skipped", reason=exc.message)
                self._end()
                return None
            self.prefill = Prefill(session, rendered, len(rendered.ids) - 1, logits=False)
        if self.prefill.done:
            self._end()
            return None
        self.chunk = self.prefill.prepare(budget)
        return self.chunk

    def take_chunk(self, logits: torch.Tensor) -> None:
        assert self.prefill is not None and self.chunk is not None
        self.prefill.advance(self.chunk)
        if self.prefill.done:
            self._end()

    def fail(self, error: Exception) -> None:
        log.error("speculative prefill failed", exc_info=error)
        self._end()

    def _end(self) -> None:
        self.finished = True
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody awaits
            self.done.get_loop().call_soon_threadsafe(_settle, self.done)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ReplyJob(Job):
    """One reply: its prefill in chunks, then one decode row per token."""

    def __init__(
        self,
        session: TransformersSession,
        conversation: list[Message],
        reply_key: str,
        params: SamplingParams,
        out: StreamedGeneration,
    ) -> None:
        self.session = session
        self.resident = session.resident
        self.conversation = conversation
        self.reply_key = reply_key
        self.params = params
        self.out = out
        self.prefill: Prefill | None = None
        self.chunk: Chunk | None = None
        self.reply: ReplyReader | None = None
        self.usage = TokenUsage()
        self.ids: list[int] = []  # the reply's, kept by the session under its key once the reply begins
        self.pending: list[int] = []  # sampled (and then forced by the grammar), not fed yet
        self.count = 0
        self.generator: torch.Generator | None = None
        self.finished = False

    def phase(self) -> Phase:
        if self.finished:
            return "done"
        if self.prefill is None or not self.prefill.done or len(self.pending) != 1:
            return "chunk"
        return "decode"

    def urgency(self) -> int:
        return 0 if self.prefill is not None and self.prefill.done else 1

    def poll(self) -> None:
        if not self.finished and (self.out.cancelled.is_set() or self.resident.closed):
            self._finish("cancelled")

    def prepare_chunk(self, budget: Budget) -> Chunk | None:
        try:
            prefill = self.prefill or self._start()
        except (ContextExceeded, GrammarError, KVBudgetExceeded) as exc:
            self._finish("error", exc)
            return None
        if not prefill.done:
            self.chunk = prefill.prepare(budget)
        else:  # tokens the grammar forced, as many as the budget takes (the rest in the next steps)
            engine, cache = self.session.engine, self.resident.cache
            feed = self.pending[: budget.left]
            engine.pool.ensure(cache, cache.length + len(feed))
            budget.spend(len(feed))
            self.chunk = Chunk(cache, cache.length, engine.runner.embed(feed))
        return self.chunk

    def take_chunk(self, logits: torch.Tensor) -> None:
        assert self.prefill is not None and self.chunk is not None
        if not self.prefill.done:
            self.prefill.advance(self.chunk)
            if not self.prefill.done:
                return
        else:
            fed = self.chunk.stop - self.chunk.start
            self.resident.cache.keys.extend(self.pending[:fed])
            del self.pending[:fed]
            if self.pending:  # more forced tokens: the next steps feed them (the last one, a decode row)
                return
        self.take_logits(logits)

    def next_token(self) -> int:
        return self.pending[0]

    def take_logits(self, logits: torch.Tensor) -> None:
        try:
            self._advance(logits)
        except GrammarError as exc:
            self._finish("error", exc)

    def fail(self, error: Exception) -> None:
        if not isinstance(error, EngineError):
            log.error("generation failed", reply=self.reply_key, exc_info=error)
            error = ModelFailure("The model failed while generating this response.")
        self._finish("error", error)

    def _start(self) -> Prefill:
        """Render the conversation and plan its prefill (only what changed is tokenized again)."""
        session, engine = self.session, self.session.engine
        tools = self.params.tools
        room = session.reply_room(self.params.max_tokens)
        rendered = session.render_within(
            self.conversation, room, tools.functions if tools else (), self.params.truncation
        )
        if len(rendered.ids) >= engine.max_context:
            raise ContextExceeded(
                f"The conversation needs {len(rendered.ids)} tokens; the model's context holds {engine.max_context}."
            )
        engine.pool.check_fits(len(rendered.ids) + 1)
        self.prefill = Prefill(session, rendered, len(rendered.ids), logits=True)
        session.generated[self.reply_key] = self.ids
        self.reply = ReplyReader(engine.token_text, tools, engine.chat_format.tool_format, engine.grammars)
        cached = self.prefill.cached
        self.usage = TokenUsage(
            input_tokens=len(rendered.ids),
            cached_tokens=cached,
            audio_tokens=rendered.audio_tokens,
            cached_audio_tokens=rendered.audio_before(cached),
        )
        if self.params.temperature > 0:
            self.generator = torch.Generator(device=engine.device)
            self.generator.manual_seed(self.params.seed if self.params.seed is not None else torch.seed())
        return self.prefill

    def _advance(self, logits: torch.Tensor) -> None:
        """Sample the next token from `logits`, then take it and what the grammar forces after it."""
        token = self._sample(logits)
        engine = self.session.engine
        self.pending = []
        if token in engine.stop_ids:
            self._finish("stop")
            return
        if not self._take(token):
            self._end_at_limit()
            return
        assert self.reply is not None
        forced = self.reply.forced()
        stops = [i for i, token in enumerate(forced) if token in engine.stop_ids]
        for token in forced[: stops[0]] if stops else forced:  # a stop ends the reply through sampling
            if not self._take(token):
                self._end_at_limit()
                return

    def _sample(self, logits: torch.Tensor) -> int:
        engine = self.session.engine
        logits[engine.suppressed] = float("-inf")
        allowed = self.reply.allowed() if self.reply is not None else None
        if allowed is not None:  # the tools' grammar: a plain unpacked mask, nothing compiled
            logits[: allowed.size][~torch.from_numpy(allowed).to(logits.device)] = float("-inf")
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

    def _take(self, token: int) -> bool:
        """Add a token to the reply (fed with the next step); False when the reply is at a limit."""
        assert self.reply is not None
        self.ids.append(token)
        self.count += 1
        self.pending.append(token)
        for event in self.reply.push(token):
            self.out.push_threadsafe(event)
        at_limit = self.params.max_tokens is not None and self.count >= self.params.max_tokens
        room = self.resident.cache.length + len(self.pending) >= self.session.engine.max_context
        return not (at_limit or room or self.reply.call_tokens >= CALL_TOKENS)

    def _end_at_limit(self) -> None:
        """End a reply at a limit: `length` for the reply's own (`max_tokens`, the context), an error for the
        per-call one, which no `max_output_tokens` can raise."""
        assert self.reply is not None
        if self.reply.call_tokens < CALL_TOKENS:
            self._finish("length")
            return
        call = f"The call of '{self.reply.call_name}'" if self.reply.call_name else "A function call"
        message = (
            f"{call} was cut off at the server's limit of {CALL_TOKENS} tokens per function call before it was "
            "complete, so it was dropped. The limit is fixed and separate from max_output_tokens: make the call "
            "need fewer tokens (fewer or shorter arguments; maxLength on strings, maxItems on arrays)."
        )
        self._finish("error", CallTooLong(message))

    def _finish(self, reason: FinishReason, error: EngineError | None = None) -> None:
        self.finished = True
        unnamed_call = self.reply is not None and self.reply.unnamed_call
        if self.reply is not None:
            events, keep = self.reply.finish()
            for event in events:
                self.out.push_threadsafe(event)
            del self.ids[keep:]  # a call cut off is no part of the reply
        usage = dataclasses.replace(self.usage, output_tokens=self.count)
        pool, cache = self.session.engine.pool, self.resident.cache
        room = pool.free_blocks * pool.block_size + len(cache.blocks) * pool.block_size - cache.length
        done = GenerationDone(
            reason,
            usage,
            error,
            kv_room=room,
            unnamed_call=unnamed_call,
            reply_ids=None if self.reply is None else tuple(self.ids),
            window=self.session.window,
        )
        self.out.push_threadsafe(done)
