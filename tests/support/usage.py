"""The GA `usage` a response should report, counted without the runtime: the prompt as the processor's own
chat template renders it (`reference_prompt`), the reply as transformers' `generate()` produces it, and the
conversation's cache as the tokens the previous replies left in it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aural.runtime.engine.base import Message
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from tests.support.reference import reference_generate, reference_prompt


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


@dataclass
class ReferenceConversation:
    """A conversation as the reference sees it, kept in step with the one the runtime serves.

    `cache` is what the conversation's cache holds after the last reply: its prompt and the reply's tokens,
    but for the last one when the reply stopped at `max_output_tokens` (the last token sampled is fed only
    with the next prompt; a reply that ends by a stop token has had all its tokens fed).
    """

    engine: TransformersEngine
    messages: list[Message] = field(default_factory=list)
    replies: dict[str, list[int]] = field(default_factory=dict)
    cache: list[int] = field(default_factory=list)

    def respond(self, key: str, max_tokens: int) -> dict[str, Any]:
        """The `usage` of a greedy reply to the conversation so far; the reply joins it under `key`."""
        prompt, _ = reference_prompt(self.engine, self.messages, self.replies)
        reply = reference_generate(self.engine, self.messages, self.replies, max_tokens)
        audio_id = self.engine.model.config.audio_token_index
        # The prompt's last position is computed even when cached: its logits give the reply's first token.
        cached = common_prefix(self.cache, prompt[:-1])
        audio, cached_audio = prompt.count(audio_id), prompt[:cached].count(audio_id)
        self.messages.append(Message("assistant", (), key=key))
        self.replies[key] = reply
        self.cache = prompt + reply[: len(reply) - (len(reply) == max_tokens)]
        return {
            "total_tokens": len(prompt) + len(reply),
            "input_tokens": len(prompt),
            "output_tokens": len(reply),
            "input_token_details": {
                "text_tokens": len(prompt) - audio,
                "audio_tokens": audio,
                "image_tokens": 0,
                "cached_tokens": cached,
                "cached_tokens_details": {
                    "text_tokens": cached - cached_audio,
                    "audio_tokens": cached_audio,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": len(reply), "audio_tokens": 0},
        }
