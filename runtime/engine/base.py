"""The engine interface between serving and the model.

The conversation layer describes the whole conversation every time it wants a reply; an
`EngineSession` keeps what it already computed (a resident KV cache and the token ids behind it) and
works only on what changed. Nothing here imports torch: the conversation layer and the server depend
on this module alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ..errors import EngineError

SAMPLE_RATE = 16000
"""Every engine takes mono float32 audio at this rate."""

AudioSamples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FunctionSpec:
    """A function the model may call. `parameters` is the JSON Schema of its arguments object."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolUse:
    """The tools of one reply and how they may be used.

    `mode` "auto": the model chooses between text and calls (a call, once opened, is constrained);
    "required": the reply is one or more calls, constrained from its first token; "none": the tools
    are shown to the model but nothing is read as a call. `function` narrows "required" to one
    function (a named `tool_choice`). `parallel` False allows at most one call per reply.
    """

    functions: tuple[FunctionSpec, ...]
    mode: Literal["auto", "none", "required"] = "auto"
    function: str | None = None
    parallel: bool = True

    @property
    def callable(self) -> tuple[FunctionSpec, ...]:
        """The functions a call of this reply may name."""
        if self.function is None:
            return self.functions
        return tuple(spec for spec in self.functions if spec.name == self.function)


@dataclass(frozen=True)
class HistoryCall:
    """A call as it stands in the history: the function's name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDelta:
    """Engine event: call `index` of the reply goes on. The first delta of a call names the function
    (its `arguments` may be empty); later ones carry new argument text."""

    index: int
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolCallDone:
    """Engine event: call `index` is complete; `arguments` is the whole JSON object, as generated."""

    index: int
    name: str
    arguments: str


@dataclass(frozen=True, eq=False)
class AudioPart:
    """Audio in a message. `key` identifies it for the life of the conversation (item id + index):
    two parts with the same key hold the same samples, or a prefix of them (the audio of a message
    still being spoken, an audio truncated since); the engine tells those apart by their length."""

    key: str
    samples: AudioSamples


Part = str | AudioPart


@dataclass(frozen=True)
class Message:
    """One turn of the conversation, in order of its parts.

    `key` is the conversation item id. For an assistant message that this engine session generated under the
    same key (or that the `SessionMemory` it was opened from holds), the session reuses the exact token ids
    produced (decoded text does not round-trip through a tokenizer), as far as their text agrees with the
    message's: a reply cut since (barge-in, truncation) keeps the ids of the text it still holds. An assistant
    message may end with function calls; a `tool` message holds one call's result as its text.
    """

    role: Literal["system", "user", "assistant", "tool"]
    parts: tuple[Part, ...]
    key: str = ""
    tool_calls: tuple[HistoryCall, ...] = ()


@dataclass(frozen=True)
class Truncation:
    """What happens when a conversation no longer fits the context (the GA `session.truncation`).

    `mode` "auto" and "retention_ratio": the oldest messages (never the system turn) are dropped until the
    conversation after the system turn fills `retention_ratio` of its limit, and the cut then stays where it
    is, turn after turn, until the conversation outgrows the limit again: one re-prefill per truncation,
    not per turn. The limit is the context less the reply's room, or `post_instructions` tokens when
    given. "disabled": never drop anything; a conversation that does not fit fails.
    """

    mode: Literal["auto", "disabled", "retention_ratio"] = "auto"
    retention_ratio: float = 0.75
    post_instructions: int | None = None


@dataclass(frozen=True)
class SamplingParams:
    """How to decode. `temperature` 0 is greedy; `max_tokens` None runs to the end of the context;
    `tools` are shown to the model and constrain its calls; `truncation` says how an overlong
    conversation is cut."""

    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    tools: ToolUse | None = None
    truncation: Truncation = field(default_factory=Truncation)


@dataclass(frozen=True)
class TokenUsage:
    """The tokens of one generation, as `response.done` reports them.

    `input_tokens` is the whole prompt (the rendered conversation the reply continues), `cached_tokens` its
    prefix that the conversation's resident cache already held (reused, not computed again), so a subset
    of it; that includes clips of the turn itself that a speculative prefill read while the user spoke.
    `audio_tokens` / `cached_audio_tokens` are the audio embedding positions among them; markup around a
    clip counts as text.
    """

    input_tokens: int = 0
    cached_tokens: int = 0
    audio_tokens: int = 0
    output_tokens: int = 0
    cached_audio_tokens: int = 0


@dataclass(frozen=True)
class TextDelta:
    """New text, always whole characters, and the tokens it came from (several when merged)."""

    text: str
    token_ids: tuple[int, ...]


FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass(frozen=True)
class GenerationDone:
    """The last event of every generation."""

    reason: FinishReason
    usage: TokenUsage = field(default_factory=TokenUsage)
    error: EngineError | None = None
    """Why a generation ended with reason `error`."""
    kv_room: int | None = None
    """Positions the conversation can still grow by before the engine's KV pool is full (None: no pool)."""
    unnamed_call: bool = False
    """The reply ended inside a function call whose name was not complete: no event announced the call, which
    was dropped with its tokens."""
    reply_ids: tuple[int, ...] | None = None
    """The token ids the session keeps for this reply (a call cut off dropped): what an assistant message under
    the reply's key renders as. None when it keeps none (the reply failed before it began, or the engine keeps
    no ids)."""
    window: str | None = None
    """The key of the first message the session keeps after a truncation, as of the reply's end (None: the
    conversation was never cut)."""


GenerationEvent = TextDelta | ToolCallDelta | ToolCallDone | GenerationDone


@dataclass(frozen=True)
class SessionMemory:
    """What an engine session knows of its conversation besides the messages: with it, a session opened on
    another engine (another process, another replica) renders the same messages to the same token ids as the
    session it was kept from, so its replies are the same tokens (greedy; the same model and dtype).

    A caller keeps it from the event stream alone: `after` folds each generation's `GenerationDone` in. A
    speculative prefill that cuts the conversation moves the window too, which the next reply's end reports:
    a memory taken between the two starts from the window as of the last reply.
    """

    replies: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Reply key → the token ids the session keeps for that reply (see `GenerationDone.reply_ids`). A plain
    dict, so that the memory pickles (a read-only proxy would not). Only the keys of the conversation's
    assistant messages are looked up: a reply whose message is gone for good can be dropped."""
    window: str | None = None
    """The key of the first message kept after a truncation (see `Truncation`), or None."""

    def after(self, reply_key: str, done: GenerationDone) -> SessionMemory:
        """The memory once the generation of `reply_key` ended with `done`."""
        if done.reply_ids is None:
            return SessionMemory(self.replies, done.window)
        return SessionMemory({**self.replies, reply_key: done.reply_ids}, done.window)


class Generation(ABC):
    """A running reply: iterate for `TextDelta`s and tool-call events until one `GenerationDone`.

    Deltas are never queued without bound: when the consumer lags, pending deltas merge into one.
    """

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[GenerationEvent]: ...

    @abstractmethod
    def cancel(self) -> None:
        """Stop before the next decode step. Iteration then ends with reason `cancelled`; the
        session's cache and history stay consistent with the tokens produced so far."""


class EngineSession(ABC):
    """One conversation's resident model state."""

    @abstractmethod
    def generate(self, conversation: Sequence[Message], reply_key: str, params: SamplingParams) -> Generation:
        """Reply to `conversation` (as the chat template renders it, plus the generation prompt).

        Only the part of the conversation that differs from what the session already holds is
        encoded and prefilled. The reply's tokens are kept under `reply_key`.
        """

    @abstractmethod
    async def prefill(
        self, conversation: Sequence[Message], tools: Sequence[FunctionSpec] = (), truncation: Truncation | None = None
    ) -> None:
        """Bring the cache to `conversation` as `generate` would render it with `tools` (and `truncation`),
        without replying.

        Speculative work while the user is still talking: a `generate` of the conversation it
        prefilled (or of one that extends it) then prefills only what differs. It returns when done.
        It never fails: a failure is logged and leaves a consistent (possibly empty) cache. The
        session's work runs in the order it was asked for: a prefill asked for while a generation
        of this session runs waits for that generation to end, never running between its steps; a
        prefill that a later request (another prefill, a `generate`) supersedes stops at its next
        step (an audio clip), its work so far kept; so does one whose call is cancelled.
        """

    @abstractmethod
    async def close(self) -> None:
        """Free the session's cache. A running generation ends as cancelled."""


@dataclass(frozen=True)
class EngineStats:
    """The KV pool of an engine, for `/healthz` and `rate_limits.updated`."""

    block_size: int
    """Positions per block."""
    blocks_total: int
    blocks_used: int
    bytes_per_block: int
    conversations_resident: int
    """Conversations whose cache is in the pool."""
    conversations_offloaded: int
    """Conversations whose cache waits in host memory."""

    @property
    def blocks_free(self) -> int:
        return self.blocks_total - self.blocks_used


@dataclass(frozen=True)
class DeviceMemory:
    """The accelerator's memory as the engine's framework sees it, for `/metrics`: the server never imports the
    framework itself (it serves any engine), so the engine reports it."""

    allocated: int
    """Bytes held by live tensors (the model, the KV pool, activations)."""
    reserved: int
    """Bytes the framework's allocator holds from the device (allocated, plus its cache)."""
    total: int
    """The device's memory."""


SchemaCheck = Callable[[Mapping[str, Any]], str | None]
"""Why a model cannot constrain a call's arguments to a JSON Schema while decoding, or None when it can."""


@dataclass(frozen=True)
class ModelCapabilities:
    """What the conversation layer must know of a model, which it cannot ask the model itself: it runs
    without one (no torch, no grammar library), so the engine hands these over.

    `clip_samples` is the longest audio the model's encoder reads as one piece (Qwen2-Audio: 30 s at
    16 kHz): the session asks for a speculative prefill each time one completes while the user talks.
    `context_window` is the model's context in tokens, reported to clients in `rate_limits.updated`.
    `check_schema` tells whether a tool's parameters can be enforced while decoding.
    """

    clip_samples: int
    context_window: int
    check_schema: SchemaCheck


@dataclass(frozen=True)
class EngineHealth:
    """The engine's state as `/healthz` reports it: "ok", or "degraded" with a sentence saying why."""

    status: Literal["ok", "degraded"] = "ok"
    reason: str | None = None


class Engine(ABC):
    """A loaded model that serves many sessions."""

    model_name: str
    max_context: int
    capabilities: ModelCapabilities

    @abstractmethod
    async def open_session(self, memory: SessionMemory | None = None) -> EngineSession:
        """A new conversation's session; with `memory`, one that continues a conversation another session
        (of this engine or another) held: its cache starts empty, but it renders the conversation as that
        session did."""

    def stats(self) -> EngineStats | None:
        """The KV pool's figures, if the engine has one (approximate while the device works)."""
        return None

    def device_memory(self) -> DeviceMemory | None:
        """The accelerator's memory, if the engine runs on one; cheap (the event loop calls it at each scrape)."""
        return None

    @abstractmethod
    def health(self) -> EngineHealth:
        """The engine's state now; cheap and non-blocking (the event loop calls it)."""

    @abstractmethod
    async def close(self) -> None: ...
