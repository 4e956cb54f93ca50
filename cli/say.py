"""`aural say FILE [--text INSTRUCTION]` or `aural say --mic`: send speech, print the replies as they stream.

The file is decoded before anything connects, so that a file that is not audio is told at once, in one line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from aural.sdk import AuralConnectionError, AuralError, Connection, connect, read_audio_file

from . import mic
from .replies import outcome


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `aural say`."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", metavar="FILE", help="an audio file (WAV, MP3, Ogg, FLAC, M4A…)")
    source.add_argument(
        "--mic",
        action="store_true",
        help=f"stream the default input device instead; the server finds the turns (needs {mic.MIC_EXTRA})",
    )
    parser.add_argument("--text", help="an instruction about the audio file (audio analysis mode)")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime", help="the runtime's realtime endpoint")
    parser.add_argument("--model", help="the model name to ask for (default: the server's)")
    parser.add_argument("--api-key", help="a key the server accepts")
    parser.add_argument("--instructions", help="the session's system prompt")
    parser.add_argument("--max-output-tokens", type=int, default=64, help="the longest reply, in tokens")
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


class Unreadable(Exception):
    """The audio file cannot be read: the message says why."""


def _read(path: str) -> bytes:
    """The file as the wire's PCM16 at 24 kHz.

    Raises:
        Unreadable: a file that is missing or not audio.
    """
    try:
        return read_audio_file(path)
    except FileNotFoundError:
        problem = "no such file"
    except ImportError as exc:  # a compressed file without PyAV: the message says what to install
        problem = str(exc)
    except OSError as exc:
        problem = exc.strerror or str(exc)
    except Exception as exc:  # PyAV's errors, not all of them ValueError: whatever it cannot decode
        problem = f"not an audio file ({exc})"
    raise Unreadable(f"{path}: {problem}")


async def say(args: argparse.Namespace) -> int:
    """Voice chat when only audio is given; audio analysis when `--text` comes with it; `--mic`: a conversation."""
    if args.mic and args.text:
        print("aural say: --text goes with a file, not with --mic", file=sys.stderr)
        return 2
    try:
        if args.mic:
            microphone = mic.Microphone.default()  # before connecting: a missing device is told at once
            async with await _connect(args) as conn:
                await mic.converse(conn, microphone, args)
            return 0
        pcm = await asyncio.to_thread(_read, args.file)
        async with await _connect(args) as conn:
            if args.instructions:
                await conn.update_session(instructions=args.instructions)
            if args.text:
                await conn.add_message("user", audio=pcm, text=args.text)
            else:
                await conn.append_audio(pcm)
                await conn.commit()
            stream = conn.create_response(max_output_tokens=args.max_output_tokens)
            async for delta in stream:
                print(delta, end="", flush=True)
            print()
            if stream.response is not None:
                print(outcome(stream.response), file=sys.stderr)
    except mic.Unavailable as exc:
        print(f"aural say: --mic: {exc}", file=sys.stderr)
        return 1
    except (Unreadable, AuralError, OSError) as exc:
        print(f"aural say: {exc}", file=sys.stderr)
        return 1
    return 0
