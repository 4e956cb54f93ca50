"""The pieces the benchmarks share: a voice conversation driven on an engine session, and the naive baseline.

Only the engine and numpy are imported here (no server, SDK or plotting), so a GPU machine that has
torch and transformers but not the rest of the runtime's dependencies can run it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np

from aural.runtime.engine.base import (
    SAMPLE_RATE,
    AudioPart,
    AudioSamples,
    EngineSession,
    GenerationDone,
    Message,
    SamplingParams,
    TextDelta,
    TokenUsage,
)
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from tests.support.reference import reference_generate

AUDIO_SECONDS = 2.0
INSTRUCTIONS = (
    "What is said here?",
    "Describe the speaker.",
    "Transcribe it.",
    "What language is this?",
    "Summarize the audio.",
    "Is the speaker happy?",
    "Repeat the last word.",
    "How many words?",
    "Answer the question.",
    "Translate it to French.",
)


@dataclass(frozen=True)
class Turn:
    """One user turn: audio at 16 kHz as the client has it, and an instruction."""

    audio: AudioSamples
    text: str


@dataclass(frozen=True)
class Reply:
    """The timings and usage of one reply."""

    ttft_s: float
    interval_s: float | None  # None when the reply has fewer than two tokens
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    deltas: int
    text: str


def speech_like(seed: int, seconds: float = AUDIO_SECONDS) -> AudioSamples:
    """A deterministic voiced signal: a wandering pitch with 15 harmonics, syllable-rate bursts, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 110 + 40 * rng.random() + 20 * np.sin(2 * np.pi * 0.7 * t + 6 * rng.random())
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(h * phase) / h for h in range(1, 16))
    syllables = np.clip(np.sin(2 * np.pi * (3.5 + rng.random()) * t + 6 * rng.random()), 0, None) ** 2
    signal = voiced * syllables + 0.03 * rng.standard_normal(t.size)
    samples: AudioSamples = (0.5 * signal / np.abs(signal).max()).astype(np.float32)
    return samples


def conversation_turns(count: int) -> list[Turn]:
    """The benchmark conversation: `count` turns of speech-like audio, each with the next instruction."""
    return [Turn(speech_like(k), INSTRUCTIONS[k % len(INSTRUCTIONS)]) for k in range(count)]


def timed_reply(start: float, arrivals: Sequence[float], text: str, usage: TokenUsage) -> Reply:
    """A reply's timings from the request time and the arrival time of each of its deltas."""
    if not arrivals:
        raise RuntimeError("a reply has no text, so it has no time to first token")
    tokens = usage.output_tokens
    return Reply(
        ttft_s=arrivals[0] - start,
        interval_s=(arrivals[-1] - arrivals[0]) / (tokens - 1) if tokens > 1 else None,
        input_tokens=usage.input_tokens,
        cached_tokens=usage.cached_tokens,
        output_tokens=tokens,
        deltas=len(arrivals),
        text=text,
    )


class DirectConversation:
    """A conversation on an engine session, no websocket, one turn at a time.

    `prepare` turns a turn's audio into what the engine gets (the server's decoding of it, say).
    """

    def __init__(
        self, session: EngineSession, tokens: int, prepare: Callable[[AudioSamples], AudioSamples] | None = None
    ) -> None:
        self.session = session
        self.tokens = tokens
        self.prepare = prepare
        self.conversation: list[Message] = []

    async def turn(self, turn: Turn) -> Reply:
        k = len(self.conversation) // 2
        audio = self.prepare(turn.audio) if self.prepare else turn.audio
        self.conversation.append(Message("user", (AudioPart(f"user{k}/0", audio), turn.text), f"user{k}"))
        arrivals: list[float] = []
        deltas: list[TextDelta] = []
        done: GenerationDone | None = None
        start = time.perf_counter()
        async for event in self.session.generate(
            self.conversation, f"reply{k}", SamplingParams(max_tokens=self.tokens)
        ):
            if isinstance(event, TextDelta):
                arrivals.append(time.perf_counter())
                deltas.append(event)
            elif isinstance(event, GenerationDone):
                done = event
        assert done is not None
        reply = timed_reply(start, arrivals, "".join(d.text for d in deltas), done.usage)
        if len(deltas[0].token_ids) > 1:  # then the first delta comes late and the interval is off
            print(f"warning: the first delta of turn {k + 1} holds {len(deltas[0].token_ids)} tokens")
        self.conversation.append(Message("assistant", (reply.text,), f"reply{k}"))
        return reply


def _timed_reference(engine: TransformersEngine, messages: Sequence[Message], generated: dict[str, list[int]]) -> float:
    start = time.perf_counter()
    reference_generate(engine, messages, generated, max_new_tokens=1)  # returns host ids: the device is done
    return time.perf_counter() - start


async def run_naive(
    engine: TransformersEngine,
    conversation: Sequence[Message],
    generated: dict[str, list[int]],
    turns: Collection[int] | None = None,
) -> list[float]:
    """Naive TTFT per turn: `generate()` for one token over the history up to each user message.

    Args:
        turns: the 1-based turns to time (all when None); the result lists them in order.
    """
    ends = [i + 1 for i, message in enumerate(conversation) if message.role == "user"]
    chosen = [end for k, end in enumerate(ends, start=1) if turns is None or k in turns]
    timed = [partial(_timed_reference, engine, conversation[:end], generated) for end in chosen]
    return [await engine.scheduler.call(call) for call in timed]


def median(values: Sequence[float | None]) -> float:
    """The median of the values that are not None."""
    return statistics.median(v for v in values if v is not None)
