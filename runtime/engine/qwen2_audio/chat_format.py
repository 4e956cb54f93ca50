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

Every position also gets a key: the token id for text, `(clip key, index)` for audio, so that two
renderings share a prefix only where both the tokens and the audio behind them are the same. A clip's
key holds its part's key, its index in the part and its sample count: a clip cut shorter (a truncated
user audio, a partial message rendered while the user is still talking) never matches the longer
one, and the completed 30 s clips of a growing utterance keep matching.

An assistant message that this session generated is rendered as the token ids it produced, as far as
they agree with the message's content, calls included (see `QwenAudioChatFormat.follow_text`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from ..base import SAMPLE_RATE, AudioPart, AudioSamples, FunctionSpec, Message
from ..tool_format import ToolFormat
from .tool_format import QwenToolFormat

DEFAULT_SYSTEM = "You are a helpful assistant."
CLIP_SAMPLES = 30 * SAMPLE_RATE
HOP = 160  # samples per mel frame
_REPLACEMENT = "\ufffd"  # what decoding makes of the bytes of an unfinished character


def audio_token_count(num_samples: int) -> int:
    """Number of `<|AUDIO|>` tokens for a clip, exactly as the processor counts them."""
    frames = -(-num_samples // HOP)
    after_conv = (frames - 1) // 2 + 1
    return max(0, (after_conv - 2) // 2 + 1)


class Tokenizer(Protocol):
    def encode(self, text: str, add_special_tokens: bool = ..., split_special_tokens: bool = ...) -> list[int]: ...

    def convert_tokens_to_ids(self, tokens: str) -> int: ...

    def decode(self, token_ids: list[int], skip_special_tokens: bool = ...) -> str: ...


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
        # A cut reply is rendered again every turn: search for its ids once.
        self._cut: Callable[[tuple[int, ...], str], tuple[int, ...]] = lru_cache(maxsize=256)(self._cut_uncached)

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self._tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True))

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)

    def follow_text(self, ids: Sequence[int], text: str) -> tuple[int, ...]:
        """The token ids of an assistant message whose reply was generated as `ids` and is now `text`.

        The reply may have been cut since (barge-in keeps only the text the client received, and
        `conversation.item.truncate` cuts it further): keep the longest prefix of `ids` whose decoded
        text is a prefix of `text`, then tokenize what remains of `text` (normally nothing). A text
        equal to the decoded ids keeps them all, without a search.
        """
        if self._decode(ids) == text:
            return tuple(ids)
        return self._cut(tuple(ids), text)

    def _cut_uncached(self, ids: tuple[int, ...], text: str) -> tuple[int, ...]:
        # Binary search on a predicate that holds for every prefix of a kept prefix: a prefix ending
        # inside a character decodes to U+FFFD at its end, which the comparison ignores here...
        low, high = 0, len(ids)
        while low < high:
            middle = (low + high + 1) // 2
            if text.startswith(self._decode(ids[:middle]).rstrip(_REPLACEMENT)):
                low = middle
            else:
                high = middle - 1
        # ...and only then do the bytes of a character that the text does not hold go.
        while not text.startswith(head := self._decode(ids[:low])):
            low -= 1
        return (*ids[:low], *self.encode(text[len(head) :]))

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
                text = "".join(part for part in message.parts if isinstance(part, str))
                if message.tool_calls:
                    text = self.tool_format.assistant_content(text, message.tool_calls)
                out.add_ids((self.im_start, *self.encode("assistant\n")))
                out.add_ids(self.follow_text(reply, text))
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
                for clip in split_clips(part):
                    audio_count += 1
                    pieces += [f"Audio {audio_count}: ", clip]
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
    """Split audio into clips of at most 30 s (the processor would silently cut the rest), each keyed
    by the part's key, its index and its sample count."""
    clips = []
    for index, start in enumerate(range(0, max(len(part.samples), 1), CLIP_SAMPLES)):
        samples = part.samples[start : start + CLIP_SAMPLES]
        clips.append(AudioPart(f"{part.key}#{index}:{len(samples)}", samples))
    return clips
