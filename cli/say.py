"""`aural say FILE [--text INSTRUCTION]`: send an utterance, print the reply as it streams."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from aural.sdk import AuralConnectionError, AuralError, Connection, connect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="an audio file (WAV, MP3, Ogg, FLAC, M4A…)")
    parser.add_argument("--text", help="an instruction about the audio (audio analysis mode)")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    parser.add_argument("--model", help="the model name to ask for (default: the server's)")
    parser.add_argument("--api-key")
    parser.add_argument("--instructions", help="the session's system prompt")
    parser.add_argument("--max-output-tokens", type=int, default=64)
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to keep retrying while the runtime starts")


async def _connect(args: argparse.Namespace) -> Connection:
    deadline = time.monotonic() + args.wait
    while True:
        try:
            return await connect(args.url, model=args.model, api_key=args.api_key)
        except (AuralConnectionError, OSError):
            if time.monotonic() >= deadline:
                raise
            await asyncio.sleep(0.25)


async def say(args: argparse.Namespace) -> int:
    """Voice chat when only audio is given; audio analysis when `--text` comes with it."""
    try:
        async with await _connect(args) as conn:
            if args.instructions:
                await conn.update_session(instructions=args.instructions)
            if args.text:
                await conn.add_message("user", audio=args.file, text=args.text)
            else:
                await conn.append_audio(args.file)
                await conn.commit()
            stream = conn.create_response(max_output_tokens=args.max_output_tokens)
            async for delta in stream:
                print(delta, end="", flush=True)
            print()
            if stream.response is not None and stream.response.usage is not None:
                usage = stream.response.usage
                print(
                    f"[{stream.response.status}: {usage.input_tokens} input tokens "
                    f"({usage.input_token_details.audio_tokens} audio), {usage.output_tokens} output tokens]",
                    file=sys.stderr,
                )
    except (AuralError, OSError, ImportError) as exc:  # ImportError: a compressed file without PyAV
        print(f"aural say: {exc}", file=sys.stderr)
        return 1
    return 0
