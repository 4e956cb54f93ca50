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
_SHORT_TEXT = 64  # characters: texts up to this long are cached by the tokenizer wrapper


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
    starts: list[tuple[int, int]] = field(default_factory=list)
    """(message index, position) where each segment after the system turn begins: the places where the
    oldest messages can be cut off."""

    @property
    def system_tokens(self) -> int:
        """Positions of the system turn (with the tools' section)."""
        return self.starts[0][1] if self.starts else len(self.ids)

    def add_ids(self, ids: Sequence[int]) -> None:
        self.ids.extend(ids)
        self.keys.extend(ids)

    def audio_before(self, position: int) -> int:
        """The audio positions among the first `position` ones."""
        return sum(max(0, min(clip.start + clip.length, position) - clip.start) for clip in self.clips)


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
        # The turn markers' short texts recur in every segment; a user's texts are tokenized once anyway (the
        # `Renderer` keeps what it rendered), so only short texts are cached, which bounds the cache's bytes.
        self._encode_short: Callable[[str], tuple[int, ...]] = lru_cache(maxsize=1024)(self._encode)

    def encode(self, text: str) -> tuple[int, ...]:
        """Token ids of `text`, special tokens split (typed markers never become turn boundaries)."""
        return self._encode_short(text) if len(text) <= _SHORT_TEXT else self._encode(text)

    def clear_cache(self) -> None:
        """Forget the short texts tokenized so far."""
        self._encode_short.cache_clear()  # type: ignore[attr-defined]

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

    def _cut(self, ids: tuple[int, ...], text: str) -> tuple[int, ...]:
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
        return Renderer(self).render(messages, generated, tools)

    def _segment(
        self,
        out: Rendered,
        messages: Sequence[Message],
        generated: Callable[[str], Sequence[int] | None],
        audio_count: int,
        section: str,
    ) -> int:
        """Append one segment (a message, or consecutive tool results); return the audio clips counted so far."""
        first = messages[0]
        if first.role == "tool":  # consecutive results share one user turn
            results = ["".join(part for part in message.parts if isinstance(part, str)) for message in messages]
            self._turn(out, "user", [self.tool_format.results_content(results)])
            return audio_count
        text = "".join(part for part in first.parts if isinstance(part, str))
        reply = generated(first.key) if first.role == "assistant" and first.key else None
        if reply is not None:
            if first.tool_calls:
                text = self.tool_format.assistant_content(text, first.tool_calls)
            out.add_ids((self.im_start, *self.encode("assistant\n")))
            out.add_ids(self.follow_text(reply, text))
            out.add_ids((self.im_end, *self.encode("\n")))
            return audio_count
        if first.tool_calls:
            self._turn(out, first.role, [self.tool_format.assistant_content(text, first.tool_calls)])
            return audio_count
        pieces: list[str | AudioPart] = []
        for part in first.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            for clip in split_clips(part):
                audio_count += 1
                pieces += [f"Audio {audio_count}: ", clip]
        if section:
            pieces.append(section)
        self._turn(out, first.role, pieces)
        return audio_count

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


@dataclass(frozen=True)
class _Mark:
    """The rendering's state after one segment, and what that segment was rendered from."""

    fingerprint: tuple[object, ...]
    ids: int
    clips: int
    audio_tokens: int
    audio_count: int


class Renderer:
    """Renders a conversation again and again as it grows, tokenizing only what changed since the last time.

    A rendering is a sequence of segments: the system turn (with the tools' section), then one per message,
    consecutive tool results forming one segment (they share a user turn). Each segment's rendering
    depends only on its messages (their roles, keys, texts, audio keys and lengths, calls and, for a reply
    this session generated, its token ids), on the tools for the system turn, and on the number of audio
    clips before it. So a new rendering keeps every segment up to the first that differs from the last
    rendering, and renders only the rest: a turn's host work follows the new turn, not the history.
    """

    def __init__(self, chat_format: QwenAudioChatFormat) -> None:
        self._format = chat_format
        self._body = Rendered()  # the segments, without the generation prompt
        self._marks: list[_Mark] = []

    def render(
        self,
        messages: Sequence[Message],
        generated: Callable[[str], Sequence[int] | None],
        tools: Sequence[FunctionSpec] = (),
    ) -> Rendered:
        """As `QwenAudioChatFormat.render`, reusing the previous rendering's unchanged segments."""
        chat_format = self._format
        section = chat_format.tool_format.system_section(tools) if tools else ""
        segments: list[tuple[int, Sequence[Message], str]] = []  # (first message's index, messages, section)
        if not messages or messages[0].role != "system":
            segments.append((-1, [Message("system", (DEFAULT_SYSTEM,))], section))
        start = 0
        while start < len(messages):
            stop = start + 1
            if messages[start].role == "tool":
                while stop < len(messages) and messages[stop].role == "tool":
                    stop += 1
            system = start == 0 and messages[0].role == "system"
            segments.append((start, messages[start:stop], section if system else ""))
            start = stop
        kept = 0
        for (_, segment, extra), mark in zip(segments, self._marks, strict=False):
            if _fingerprint(segment, extra, generated) != mark.fingerprint:
                break
            kept += 1
        self._truncate(kept)
        body = self._body
        audio_count = self._marks[-1].audio_count if self._marks else 0
        for _, segment, extra in segments[kept:]:
            audio_count = chat_format._segment(body, segment, generated, audio_count, extra)
            fingerprint = _fingerprint(segment, extra, generated)
            self._marks.append(_Mark(fingerprint, len(body.ids), len(body.clips), body.audio_tokens, audio_count))
        starts = [(first, mark.ids) for (first, _, _), mark in zip(segments[1:], self._marks, strict=False)]
        out = Rendered(list(body.ids), list(body.keys), list(body.clips), body.audio_tokens, starts)
        out.add_ids((chat_format.im_start, *chat_format.encode("assistant\n")))
        return out

    def _truncate(self, kept: int) -> None:
        del self._marks[kept:]
        last = self._marks[-1] if self._marks else _Mark((), 0, 0, 0, 0)
        body = self._body
        del body.ids[last.ids :], body.keys[last.ids :], body.clips[last.clips :]
        body.audio_tokens = last.audio_tokens


def _fingerprint(
    messages: Sequence[Message], section: str, generated: Callable[[str], Sequence[int] | None]
) -> tuple[object, ...]:
    """Everything a segment's rendering depends on (audio by key and length: same key, same samples)."""
    parts: list[object] = [section]
    for message in messages:
        reply = generated(message.key) if message.role == "assistant" and message.key else None
        audio = tuple(part if isinstance(part, str) else (part.key, len(part.samples)) for part in message.parts)
        parts.append((message.role, message.key, audio, message.tool_calls, None if reply is None else tuple(reply)))
    return tuple(parts)
