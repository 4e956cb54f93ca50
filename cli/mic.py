"""`aural say --mic`: the default input device streamed to the runtime in 20 ms blocks; the server's voice activity
detection finds each turn and answers it, and the replies print as they stream. Ctrl-C ends the conversation.

The microphone comes from `sounddevice` (PortAudio), an optional extra (`pip install 'aural[mic]'`) imported only
here. A missing package, library or input device is told in one line before anything connects.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from typing import Any

from aural.sdk import (
    WIRE_RATE,
    Connection,
    Error,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    ResponseCreated,
    ResponseDone,
    ResponseOutputTextDelta,
    ServerVad,
)

from .replies import outcome

MIC_EXTRA = "pip install 'aural[mic]'"
BLOCK_MS = 20
"""Audio per append: a microphone's usual packet, short enough for the server to see a turn end at once."""


class Unavailable(Exception):
    """No microphone can be opened: the message says what is missing."""


@dataclass(frozen=True)
class Microphone:
    """The default input device, found but not opened."""

    sounddevice: Any  # the module: it has no type information
    name: str

    @classmethod
    def default(cls) -> Microphone:
        """The default input device.

        Raises:
            Unavailable: sounddevice is not installed, PortAudio is missing, or there is no input device.
        """
        try:
            import sounddevice
        except ImportError:
            raise Unavailable(f"needs the sounddevice package: {MIC_EXTRA}") from None
        except OSError as exc:  # sounddevice finds no PortAudio library when it is imported
            raise Unavailable(
                f"needs the PortAudio library ({exc}): apt install libportaudio2, or brew install portaudio"
            ) from None
        try:
            device = sounddevice.query_devices(kind="input")
        except (ValueError, sounddevice.PortAudioError) as exc:
            raise Unavailable(f"no input device ({exc})") from None
        return cls(sounddevice, str(device["name"]))


async def converse(conn: Connection, microphone: Microphone, args: argparse.Namespace) -> None:
    """Stream the microphone with server VAD and print every reply until cancelled (Ctrl-C).

    Raises:
        Unavailable: the device cannot be opened at the wire's rate.
    """
    loop = asyncio.get_running_loop()
    blocks: asyncio.Queue[bytes] = asyncio.Queue()

    def captured(data: Any, frames: int, when: Any, status: Any) -> None:  # on PortAudio's thread
        loop.call_soon_threadsafe(blocks.put_nowait, bytes(data))

    if args.instructions:
        await conn.update_session(instructions=args.instructions)
    await conn.update_session(max_output_tokens=args.max_output_tokens, turn_detection=ServerVad())
    try:
        stream = microphone.sounddevice.RawInputStream(
            samplerate=WIRE_RATE, channels=1, dtype="int16", blocksize=WIRE_RATE * BLOCK_MS // 1000, callback=captured
        )
    except (ValueError, microphone.sounddevice.PortAudioError) as exc:
        raise Unavailable(f"{microphone.name} cannot record PCM16 mono at {WIRE_RATE} Hz ({exc})") from None
    print(f"[listening on {microphone.name}: speak, Ctrl-C ends]", file=sys.stderr)
    with stream:
        sending = asyncio.create_task(_send(conn, blocks))
        try:
            async for event in conn:
                _show(event)
        finally:
            sending.cancel()


async def _send(conn: Connection, blocks: asyncio.Queue[bytes]) -> None:
    while True:
        await conn.append_audio(await blocks.get())


def _show(event: object) -> None:
    match event:
        case InputAudioBufferSpeechStarted():
            print("[hearing you]", file=sys.stderr)
        case InputAudioBufferSpeechStopped():
            print("[thinking]", file=sys.stderr)
        case ResponseCreated():
            print("aural: ", end="", flush=True)
        case ResponseOutputTextDelta(delta=delta):
            print(delta, end="", flush=True)
        case ResponseDone(response=response):
            print()
            print(outcome(response), file=sys.stderr)
        case Error(error=error):
            print(f"[error: {error.message}]", file=sys.stderr)
