"""A Pipecat pipeline whose OpenAI Realtime service talks to Aural: only the base URL changes.

Pipecat's `OpenAIRealtimeLLMService` connects to `--url` and configures the session; the bot greets (or
answers the typed turn) and, for a spoken turn, the audio is then streamed as a transport would (20 ms frames,
then a second of silence): Aural's server VAD finds the turn, commits it and answers. The replies' text frames
are printed as they come down the pipeline.

aural serve --alias gpt-realtime &
python examples/pipecat_bot.py examples/sample.wav                      # a spoken turn
python examples/pipecat_bot.py --text "Hello!"                          # a typed turn
python examples/pipecat_bot.py --text "Weather in Oslo?" --force-tool   # a call of get_weather, then the answer
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Literal

from loguru import logger
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.adapters.llm.schemas.tools_schema import ToolsSchema
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    FunctionCallResultFrame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMRunFrame,
    LLMTextFrame,
    LLMUpdateSettingsFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.llm_service import FunctionCallParams
from pipecat.services.openai.realtime import events
from pipecat.services.openai.realtime.llm import OpenAIRealtimeLLMService
from pipecat.workers.runner import WorkerRunner

from aural.sdk import WIRE_RATE, read_audio_file

CHUNK_MS = 20
TAIL_MS = 1000
"""Silence sent after the speech, as a microphone goes on sending it: it lets the server see the turn end."""
REPLY_TIMEOUT = 60.0
WEATHER = FunctionSchema(
    name="get_weather",
    description="The current weather in a city.",
    properties={"city": {"type": "string", "maxLength": 12}},
    required=["city"],
)


def session_properties(
    *, server_vad: bool, tool_choice: Literal["auto", "required"], max_output_tokens: int
) -> events.SessionProperties:
    """The session Pipecat asks Aural for: text out, server VAD for spoken turns (else turns are typed)."""
    detection = events.TurnDetection(silence_duration_ms=500) if server_vad else False
    return events.SessionProperties(
        output_modalities=["text"],  # Aural answers in text: speak it with any Pipecat TTS service
        instructions="You are a friendly voice assistant. Answer briefly.",
        audio=events.AudioConfiguration(input=events.AudioInput(turn_detection=detection)),
        tools=ToolsSchema(standard_tools=[WEATHER]),
        tool_choice=tool_choice,
        max_output_tokens=max_output_tokens,
    )


def realtime_service(
    url: str, model: str, *, server_vad: bool, force_tool: bool, max_output_tokens: int
) -> OpenAIRealtimeLLMService:
    """Pipecat's OpenAI Realtime service, pointed at Aural (`url`, e.g. ws://127.0.0.1:8000/v1/realtime), with
    the get_weather tool registered."""
    choice: Literal["auto", "required"] = "required" if force_tool else "auto"
    initial = session_properties(server_vad=server_vad, tool_choice=choice, max_output_tokens=max_output_tokens)
    settings = OpenAIRealtimeLLMService.Settings(model=model, session_properties=initial)
    service = OpenAIRealtimeLLMService(api_key="unused", base_url=url, settings=settings)

    async def get_weather(params: FunctionCallParams) -> None:
        """Pipecat runs it when the model calls it, and sends its result back to the server."""
        if force_tool:  # a session that must call would call again after the result: let it answer now
            after = session_properties(server_vad=server_vad, tool_choice="auto", max_output_tokens=max_output_tokens)
            delta = OpenAIRealtimeLLMService.Settings(session_properties=after)
            await service.queue_frame(LLMUpdateSettingsFrame(delta=delta))
        await params.result_callback({"city": params.arguments.get("city"), "temperature": 21, "unit": "c"})

    service.register_function("get_weather", get_weather)
    return service


@dataclass
class Transcript:
    """What came down the pipeline: each reply's text, the calls run, the errors."""

    replies: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    """(name, arguments, result), as JSON."""
    errors: list[str] = field(default_factory=list)
    streaming: str = ""
    """The text of the reply under way."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_for_replies(self, count: int) -> None:
        """Wait until `count` replies have ended, or an error came (Pipecat stops at the first)."""
        async with asyncio.timeout(REPLY_TIMEOUT):
            while len(self.replies) < count and not self.errors:
                self.changed.clear()
                await self.changed.wait()


class ReplyPrinter(FrameProcessor):
    """The end of the pipeline (where a TTS service would be): prints the reply's text as it streams."""

    def __init__(self, transcript: Transcript) -> None:
        super().__init__()
        self.transcript = transcript

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, LLMTextFrame):
            self.transcript.streaming += frame.text
            print(frame.text, end="", flush=True)
        elif isinstance(frame, FunctionCallResultFrame):
            call = (frame.function_name, json.dumps(frame.arguments), json.dumps(frame.result))
            self.transcript.calls.append(call)
            print(f"[called {call[0]}({call[1]}) -> {call[2]}]")
        elif isinstance(frame, LLMFullResponseEndFrame):
            print(f" [reply of {len(self.transcript.streaming)} characters]", flush=True)
            self.transcript.replies.append(self.transcript.streaming)
            self.transcript.streaming = ""
            self.transcript.changed.set()
        elif isinstance(frame, ErrorFrame):
            self.transcript.errors.append(frame.error)
            self.transcript.changed.set()
        await self.push_frame(frame, direction)


def speech_frames(path: str) -> list[InputAudioRawFrame]:
    """The file and a second of silence as 20 ms frames of PCM16 at 24 kHz, as a transport delivers audio."""
    pcm = read_audio_file(path, rate=WIRE_RATE) + bytes(2 * WIRE_RATE * TAIL_MS // 1000)
    chunk = 2 * WIRE_RATE * CHUNK_MS // 1000
    return [
        InputAudioRawFrame(audio=pcm[offset : offset + chunk], sample_rate=WIRE_RATE, num_channels=1)
        for offset in range(0, len(pcm), chunk)
    ]


async def converse(
    url: str,
    *,
    model: str = "gpt-realtime",
    audio: str | None = None,
    text: str | None = None,
    force_tool: bool = False,
    max_output_tokens: int = 256,
) -> Transcript:
    """Run one turn through a Pipecat pipeline: typed (`text`, answered at once), or spoken (the file `audio`,
    streamed once the bot has greeted: the session is configured by then). Returns when the turn's reply has
    ended (with `force_tool`, the call's reply and then the answer after its result)."""
    transcript = Transcript()
    llm = realtime_service(
        url, model, server_vad=audio is not None, force_tool=force_tool, max_output_tokens=max_output_tokens
    )
    context = LLMContext([{"role": "user", "content": text}] if text else [])
    user, assistant = LLMContextAggregatorPair(context)  # keeps the context; asks for the answer after a tool
    pipeline = Pipeline([user, llm, ReplyPrinter(transcript), assistant])
    worker = PipelineWorker(pipeline, idle_timeout_secs=None)
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())
    greeting = 1 if audio is not None else 0
    try:
        await worker.queue_frame(LLMRunFrame())  # the service takes in the context and answers it
        if audio is not None:
            await transcript.wait_for_replies(greeting)
            for frame in speech_frames(audio):
                await worker.queue_frame(frame)
        await transcript.wait_for_replies(greeting + 1 + (1 if force_tool else 0))
    finally:
        await worker.cancel()
        await running
    return transcript


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", help="a spoken turn (any format PyAV reads), standing in for a microphone")
    parser.add_argument("--text", help="a typed turn instead")
    parser.add_argument("--force-tool", action="store_true", help="tool_choice 'required': the reply calls get_weather")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    parser.add_argument("--model", default="gpt-realtime", help="a model name the server serves (--alias)")
    parser.add_argument("--max-output-tokens", type=int, default=256, help="each reply's token limit")
    args = parser.parse_args()
    logger.remove()  # Pipecat logs every frame at DEBUG
    logger.add(sys.stderr, level="ERROR")
    if (args.file is None) == (args.text is None):
        parser.error("give an audio file or --text")
    transcript = asyncio.run(
        converse(
            args.url,
            model=args.model,
            audio=args.file,
            text=args.text,
            force_tool=args.force_tool,
            max_output_tokens=args.max_output_tokens,
        )
    )
    for error in transcript.errors:
        print(f"error: {error}")


if __name__ == "__main__":
    main()
