"""Qwen2-Audio's chat format, rendered straight to token ids.

The text is what the model's chat template renders (Qwen2-Audio-7B-Instruct's equals the processor's
default): a default system turn when the first message is not a system message; each audio clip as
`Audio k: <|audio_bos|><|AUDIO|>…<|audio_eos|>\\n`, k counted across the whole conversation; each turn
closed by `<|im_end|>\\n`. Audio longer than 30 s becomes several clips, since the encoder sees at most
30 s. Text that a user typed is tokenized with special tokens split, so typing `<|im_end|>` cannot
forge a turn boundary.

Tools follow the model family's `ToolFormat` (Qwen2.5's by default): their section ends the system
turn's content (after the default system text when there is no system message), an assistant turn
holds its calls after its text, and consecutive `tool` messages share one user turn.

Every position also gets a key: the token id for text, `(audio key, index)` for audio, so that two
renderings share a prefix only where both the tokens and the audio behind them are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from .base import SAMPLE_RATE, AudioPart, AudioSamples, Message
from .tools import FunctionSpec, QwenToolFormat, ToolFormat

DEFAULT_SYSTEM = "You are a helpful assistant."
CLIP_SAMPLES = 30 * SAMPLE_RATE
HOP = 160  # samples per mel frame


def audio_token_count(num_samples: int) -> int:
    """Number of `<|AUDIO|>` tokens for a clip, exactly as the processor counts them."""
    frames = -(-num_samples // HOP)
    after_conv = (frames - 1) // 2 + 1
    return max(0, (after_conv - 2) // 2 + 1)


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ..., split_special_tokens: bool = ...) -> list[int]: ...

    def convert_tokens_to_ids(self, tokens: str) -> int: ...


@dataclass(frozen=True)
class ClipSlot:
    """Where one audio clip's tokens sit in a rendered sequence."""

    start: int
    length: int
    key: str
    samples: AudioSamples


@dataclass
class Rendered:
    """A conversation as token ids, with a key per position and the audio clips to encode."""

    ids: list[int] = field(default_factory=list)
    keys: list[Hashable] = field(default_factory=list)
    clips: list[ClipSlot] = field(default_factory=list)
    audio_tokens: int = 0

    def add_ids(self, ids: Sequence[int]) -> None:
        self.ids.extend(ids)
        self.keys.extend(ids)


class QwenAudioChatFormat:
    """Renders `Message`s for Qwen2-Audio."""

    def __init__(self, tokenizer: Tokenizer, tool_format: ToolFormat | None = None) -> None:
        self._tokenizer = tokenizer
        self.tool_format = tool_format or QwenToolFormat()
        ids = tokenizer.convert_tokens_to_ids
        self.im_start, self.im_end = ids("<|im_start|>"), ids("<|im_end|>")
        self.audio_bos, self.audio, self.audio_eos = (
            ids("<|audio_bos|>"),
            ids("<|AUDIO|>"),
            ids("<|audio_eos|>"),
        )
        self.encode: Callable[[str], tuple[int, ...]] = lru_cache(maxsize=4096)(self._encode)

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self._tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))

    @property
    def suppressed_ids(self) -> tuple[int, ...]:
        """Tokens the model must never generate: an `<|AUDIO|>` in the history breaks the next turn."""
        return (self.audio_bos, self.audio, self.audio_eos)

    def render(
        self,
        messages: Sequence[Message],
        generated: Callable[[str], Sequence[int] | None],
        tools: Sequence[FunctionSpec] = (),
    ) -> Rendered:
        """Render `messages` followed by the generation prompt.

        Args:
            generated: token ids this session generated for an assistant message key, or None.
            tools: the functions shown to the model.
        """
        out = Rendered()
        audio_count = 0
        section = self.tool_format.system_section(tools) if tools else ""
        if not messages or messages[0].role != "system":
            self._turn(out, "system", [DEFAULT_SYSTEM + section])
        results: list[str] = []
        for index, message in enumerate(messages):
            if message.role == "tool":  # consecutive results share one user turn
                results.append("".join(part for part in message.parts if isinstance(part, str)))
                if index + 1 == len(messages) or messages[index + 1].role != "tool":
                    self._turn(out, "user", [self.tool_format.results_content(results)])
                    results = []
                continue
            reply = generated(message.key) if message.role == "assistant" and message.key else None
            if reply is not None:
                out.add_ids((self.im_start, *self.encode("assistant\n")))
                out.add_ids(reply)
                out.add_ids((self.im_end, *self.encode("\n")))
                continue
            if message.tool_calls:
                text = "".join(part for part in message.parts if isinstance(part, str))
                self._turn(out, message.role, [self.tool_format.assistant_content(text, message.tool_calls)])
                continue
            pieces: list[str | AudioPart] = []
            for part in message.parts:
                if isinstance(part, str):
                    pieces.append(part)
                    continue
                for clip_index, clip in enumerate(split_clips(part)):
                    audio_count += 1
                    pieces += [f"Audio {audio_count}: ", AudioPart(f"{clip.key}#{clip_index}", clip.samples)]
            if index == 0 and message.role == "system":
                pieces.append(section)
            self._turn(out, message.role, pieces)
        out.add_ids((self.im_start, *self.encode("assistant\n")))
        return out

    def _turn(self, out: Rendered, role: str, pieces: Sequence[str | AudioPart]) -> None:
        out.add_ids((self.im_start,))
        text = f"{role}\n"
        for piece in pieces:
            if isinstance(piece, str):
                text += piece
                continue
            out.add_ids(self.encode(text))
            text = "\n"
            out.add_ids((self.audio_bos,))
            length = audio_token_count(len(piece.samples))
            out.clips.append(ClipSlot(len(out.ids), length, piece.key, piece.samples))
            out.ids.extend([self.audio] * length)
            out.keys.extend((piece.key, i) for i in range(length))
            out.audio_tokens += length
            out.add_ids((self.audio_eos,))
        out.add_ids(self.encode(text))
        out.add_ids((self.im_end, *self.encode("\n")))


def split_clips(part: AudioPart) -> list[AudioPart]:
    """Split audio into clips of at most 30 s (the processor would silently cut the rest)."""
    samples = part.samples
    return [
        AudioPart(part.key, samples[start : start + CLIP_SAMPLES])
        for start in range(0, max(len(samples), 1), CLIP_SAMPLES)
    ]
