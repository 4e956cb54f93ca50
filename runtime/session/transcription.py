"""Input audio transcription: Qwen2-Audio itself transcribes each committed audio turn in a side pass.

The side pass runs on a throwaway engine session (the driver's business), so it never touches the
conversation's cache; its text streams as `conversation.item.input_audio_transcription.delta` events
and, once finished, is kept as the audio part's `transcript`.
"""

from __future__ import annotations

import math

from aural.protocols import server_events as se
from aural.protocols.models import AudioTranscription, ErrorDetail

from ..engine.base import SAMPLE_RATE, AudioPart, AudioSamples, GenerationDone, Message, SamplingParams, TextDelta
from .commands import Step, Transcribe, emit, order
from .items import Conversation
from .wire_errors import wire_code

PROMPT = "Transcribe the speech in this audio exactly as spoken, with no other words."
MAX_TOKENS = 4096


class Transcriptions:
    """The transcriptions in progress in one session, by (item id, content index)."""

    def __init__(self, items: Conversation) -> None:
        self._items = items
        self._texts: dict[tuple[str, int], str] = {}

    def start(self, settings: AudioTranscription | None, item_id: str, index: int, audio: AudioSamples) -> Step:
        """The command that transcribes an audio part, when the session asks for transcription."""
        if settings is None:
            return Step()
        prompt = PROMPT
        if settings.language:
            prompt += f" The speech is in the language '{settings.language}'."
        if settings.prompt:
            prompt += f" Context: {settings.prompt}"
        message = Message("user", (AudioPart(f"{item_id}/{index}", audio), prompt), key=f"transcription:{item_id}")
        max_tokens = min(MAX_TOKENS, 16 + 8 * math.ceil(audio.size / SAMPLE_RATE))
        self._texts[(item_id, index)] = ""
        return order(Transcribe(item_id, index, [message], SamplingParams(max_tokens=max_tokens)))

    def progress(self, item_id: str, index: int, event: TextDelta | GenerationDone) -> Step:
        """The side pass transcribing an audio part went on."""
        if isinstance(event, TextDelta):
            return self._delta(item_id, index, event.text)
        return self._done(item_id, index, event)

    def _delta(self, item_id: str, index: int, text: str) -> Step:
        if (item_id, index) not in self._texts or not text:
            return Step()
        self._texts[(item_id, index)] += text
        return emit(se.ConversationItemInputAudioTranscriptionDelta(item_id=item_id, content_index=index, delta=text))

    def _done(self, item_id: str, index: int, result: GenerationDone) -> Step:
        """The side pass ended; a finished transcript is also kept in the item."""
        transcript = self._texts.pop((item_id, index), None)
        if transcript is None:
            return Step()
        if result.reason in ("cancelled", "error"):
            detail = ErrorDetail(
                type="server_error",
                code=wire_code(result.error).value if result.error else "transcription_failed",
                message=result.error.message if result.error else "The transcription did not finish.",
            )
            failed = se.ConversationItemInputAudioTranscriptionFailed
            return emit(failed(item_id=item_id, content_index=index, error=detail))
        self._items.set_transcript(item_id, index, transcript)
        usage = se.TranscriptUsage(
            input_tokens=result.usage.input_tokens,
            output_tokens=result.usage.output_tokens,
            total_tokens=result.usage.input_tokens + result.usage.output_tokens,
        )
        completed = se.ConversationItemInputAudioTranscriptionCompleted
        return emit(completed(item_id=item_id, content_index=index, transcript=transcript, usage=usage))
