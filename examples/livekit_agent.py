"""A LiveKit agent whose OpenAI realtime model is Aural: only the base URL changes.

In a LiveKit room (a LiveKit server, and LIVEKIT_URL, LIVEKIT_API_KEY, LIVEKIT_API_SECRET set), the agent
joins rooms as LiveKit's worker runs it; AURAL_URL (default ws://127.0.0.1:8000/v1) says where Aural is:

    aural serve --alias gpt-realtime &
    python examples/livekit_agent.py room dev

Without a room, the agent's realtime session is driven as LiveKit's AgentSession drives it: audio frames
pushed as a room track delivers them (Aural's VAD finds the turn and answers), or a typed turn put into the
chat context and a reply asked for; a function call is run and its output sent back before the answer.

    python examples/livekit_agent.py examples/sample.wav                      # a spoken turn
    python examples/livekit_agent.py --text "Hello!"                          # a typed turn
    python examples/livekit_agent.py --text "Weather in Oslo?" --force-tool   # a call of get_weather, then the answer
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field
from typing import Annotated

from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli, llm
from livekit.agents.llm.utils import execute_function_call
from livekit.plugins.openai.realtime import RealtimeModel, RealtimeSession
from pydantic import Field

from aural.sdk import WIRE_RATE, read_audio_file

INSTRUCTIONS = "You are a friendly voice assistant. Answer briefly."
CHUNK_MS = 20
TAIL_MS = 1000
"""Silence sent after the speech, as a room track goes on sending it: it lets the server see the turn end."""
REPLY_TIMEOUT = 60.0


@llm.function_tool
async def get_weather(city: Annotated[str, Field(max_length=12)]) -> dict[str, object]:
    """The current weather in a city.

    Args:
        city: the city's name.
    """
    return {"city": city, "temperature": 21, "unit": "c"}


def realtime_model(
    base_url: str, model: str = "gpt-realtime", max_output_tokens: int = 256, tool_choice: llm.ToolChoice | None = None
) -> RealtimeModel:
    """LiveKit's OpenAI realtime model pointed at Aural (`base_url`: ws://HOST:PORT/v1, or its http:// form).

    Text out (Aural answers in text: pair it with a TTS in the AgentSession). LiveKit's default turn detection,
    `semantic_vad`, runs as Aural's `server_vad`; its default transcription model name is accepted, and
    Qwen2-Audio transcribes. `tool_choice` is the session's (LiveKit sends it before the tools).
    """
    realtime = RealtimeModel(
        base_url=base_url, model=model, api_key="unused", modalities=["text"], tool_choice=tool_choice
    )
    realtime.update_options(max_response_output_tokens=max_output_tokens)  # LiveKit's default is "inf"
    return realtime


# --- in a LiveKit room -----------------------------------------------------------------------------

server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    """A room's agent: Aural hears the participant and answers; the tool runs in the agent."""
    session: AgentSession[None] = AgentSession(
        llm=realtime_model(os.environ.get("AURAL_URL", "ws://127.0.0.1:8000/v1"))
    )
    await session.start(agent=Agent(instructions=INSTRUCTIONS, tools=[get_weather]), room=ctx.room)


# --- without a room --------------------------------------------------------------------------------


@dataclass
class Transcript:
    """What the session produced: each reply's text, the calls run (name, arguments, output), the errors."""

    replies: list[str] = field(default_factory=list)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def speech_frames(path: str) -> list[rtc.AudioFrame]:
    """The file and a second of silence as 20 ms frames of PCM16 at 24 kHz, as a room track delivers audio."""
    pcm = read_audio_file(path, rate=WIRE_RATE) + bytes(2 * WIRE_RATE * TAIL_MS // 1000)
    chunk = 2 * WIRE_RATE * CHUNK_MS // 1000
    return [
        rtc.AudioFrame(pcm[offset : offset + chunk], WIRE_RATE, 1, len(pcm[offset : offset + chunk]) // 2)
        for offset in range(0, len(pcm), chunk)
    ]


async def read_reply(generation: llm.GenerationCreatedEvent, transcript: Transcript) -> list[llm.FunctionCall]:
    """Print one reply's text as it streams; returns the function calls it made."""
    text = ""
    async for message in generation.message_stream:
        async for delta in message.text_stream:
            text += delta
            print(delta, end="", flush=True)
    print(f" [reply of {len(text)} characters]", flush=True)
    transcript.replies.append(text)
    return [call async for call in generation.function_stream]


async def answer(session: RealtimeSession, generation: llm.GenerationCreatedEvent, transcript: Transcript) -> None:
    """Read a reply; when it called tools, run them, send their outputs and read the answer that follows, as
    AgentSession does (the reply to tool outputs is asked for with tool_choice 'auto', never a forced one)."""
    calls = await read_reply(generation, transcript)
    if not calls:
        return
    tools = llm.ToolContext([get_weather])
    chat_ctx = session.chat_ctx.copy()
    for call in calls:
        result = await execute_function_call(
            llm.FunctionToolCall(name=call.name, arguments=call.arguments, call_id=call.call_id), tools
        )
        assert result.fnc_call_out is not None
        output = result.fnc_call_out.output
        transcript.calls.append((call.name, call.arguments, output))
        print(f"[called {call.name}({call.arguments}) -> {output}]", flush=True)
        chat_ctx.items.append(result.fnc_call_out)
    await session.update_chat_ctx(chat_ctx)
    await read_reply(await session.generate_reply(tool_choice="auto"), transcript)


async def converse(
    base_url: str,
    *,
    model: str = "gpt-realtime",
    audio: str | None = None,
    text: str | None = None,
    force_tool: bool = False,
    max_output_tokens: int = 256,
) -> Transcript:
    """One turn (spoken from the file `audio`, or typed `text`) through the agent's realtime session."""
    transcript = Transcript()
    forced: llm.ToolChoice = {"type": "function", "function": {"name": "get_weather"}}
    realtime = realtime_model(base_url, model, max_output_tokens, tool_choice=forced if force_tool else None)
    session = realtime.session()
    session.on("error", lambda event: transcript.errors.append(str(event.error)))
    generations: asyncio.Queue[llm.GenerationCreatedEvent] = asyncio.Queue()
    session.on("generation_created", generations.put_nowait)  # replies the server starts (server VAD)
    try:
        await session.update_instructions(INSTRUCTIONS)
        await session.update_tools([get_weather])
        if text is not None:
            chat_ctx = session.chat_ctx.copy()
            chat_ctx.add_message(role="user", content=text)
            await session.update_chat_ctx(chat_ctx)
            generation = await session.generate_reply()
        else:
            for frame in speech_frames(audio or ""):
                session.push_audio(frame)
            generation = await asyncio.wait_for(generations.get(), REPLY_TIMEOUT)
        await asyncio.wait_for(answer(session, generation, transcript), REPLY_TIMEOUT)
    finally:
        await session.aclose()
        await realtime.aclose()
    return transcript


def main() -> None:
    if sys.argv[1:2] == ["room"]:  # LiveKit's own command line: dev, start, connect...
        del sys.argv[1]
        cli.run_app(server)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", nargs="?", help="a spoken turn (any format PyAV reads), standing in for a room track")
    parser.add_argument("--text", help="a typed turn instead")
    parser.add_argument("--force-tool", action="store_true", help="a reply that must call get_weather")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1", help="Aural's base URL (without /realtime)")
    parser.add_argument("--model", default="gpt-realtime", help="a model name the server serves (--alias)")
    parser.add_argument("--max-output-tokens", type=int, default=256, help="each reply's token limit")
    args = parser.parse_args()
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
