"""A hand-made voice bot's skeleton with the Aural SDK: the server finds the turns in streamed audio and answers.

Audio goes up in 20 ms chunks, as a microphone would send it; the server's voice activity detection marks
where speech starts and stops, commits each turn, transcribes it and answers it. Swap the file for a
microphone (and the prints for a speaker) and this is a voice bot.

aural serve &                      # the built-in tiny model (random weights: replies are noise)
python examples/voice_bot.py examples/sample.wav          # in real time
python examples/voice_bot.py examples/sample.wav --fast   # as fast as the server takes it
"""

from __future__ import annotations

import argparse
import asyncio

import aural.sdk
from aural.sdk import (
    WIRE_RATE,
    AudioTranscription,
    ConversationItemInputAudioTranscriptionCompleted,
    ConversationItemInputAudioTranscriptionFailed,
    Error,
    InputAudioBufferCommitted,
    InputAudioBufferSpeechStarted,
    InputAudioBufferSpeechStopped,
    ResponseCreated,
    ResponseDone,
    ResponseOutputTextDelta,
    ServerEvent,
    ServerVad,
    read_audio_file,
)

CHUNK_MS = 20
TAIL_MS = 1000
"""Silence sent after the file, as a microphone goes on sending it: it lets the server see the last turn end."""


class Bot:
    """Prints what the server says about the conversation, and knows when it has nothing left to say."""

    def __init__(self) -> None:
        self.speaking = False
        self.waiting: set[str] = set()  # responses and transcriptions under way
        self.replying = False  # a reply's text is being printed on the current line

    def say(self, line: str) -> None:
        """Print a line of its own, even in the middle of a reply's text (which then goes on below it)."""
        if self.replying:
            print(f"\n{line}\nbot: ...", end="", flush=True)
        else:
            print(line, flush=True)

    @property
    def busy(self) -> bool:
        return self.speaking or bool(self.waiting)

    def on_event(self, event: ServerEvent) -> None:
        match event:
            case InputAudioBufferSpeechStarted(audio_start_ms=start):
                self.speaking = True
                self.say(f"[speech started at {start / 1000:.2f} s]")
            case InputAudioBufferSpeechStopped(audio_end_ms=end):
                self.speaking = False
                self.say(f"[speech stopped at {end / 1000:.2f} s]")
            case InputAudioBufferCommitted(item_id=item_id):
                self.waiting.add(item_id)
            case ConversationItemInputAudioTranscriptionCompleted(item_id=item_id, transcript=transcript):
                self.waiting.discard(item_id)
                self.say(f"you: {transcript}")
            case ConversationItemInputAudioTranscriptionFailed(item_id=item_id):
                self.waiting.discard(item_id)
                self.say("you: (not transcribed)")
            case ResponseCreated(response=response):
                self.waiting.add(response.id or "")
                print("\nbot: " if self.replying else "bot: ", end="", flush=True)
                self.replying = True
            case ResponseOutputTextDelta(delta=delta):
                print(delta, end="", flush=True)  # a voice bot would speak it here
            case ResponseDone(response=response):
                self.waiting.discard(response.id or "")
                print(f" [{response.status}]", flush=True)
                self.replying = False
            case Error(error=error):
                self.say(f"[error: {error.message}]")


async def stream_file(conn: aural.sdk.Connection, path: str, *, fast: bool) -> None:
    """Send the file and then a little silence in 20 ms chunks, paced in real time unless `fast`."""
    pcm = await asyncio.to_thread(read_audio_file, path, rate=WIRE_RATE)  # the session's format: GA PCM16
    pcm += bytes(2 * WIRE_RATE * TAIL_MS // 1000)
    chunk = 2 * WIRE_RATE * CHUNK_MS // 1000
    loop = asyncio.get_running_loop()
    start = loop.time()
    for number, offset in enumerate(range(0, len(pcm), chunk), start=1):
        await conn.append_audio(pcm[offset : offset + chunk])
        if not fast:  # paced against the clock, so that sending time does not add up
            await asyncio.sleep(max(0.0, start + number * CHUNK_MS / 1000 - loop.time()))


async def converse(conn: aural.sdk.Connection, path: str, *, fast: bool, linger: float) -> None:
    """The bot's conversation on an open connection, over a websocket or to a runtime in this process."""
    bot = Bot()
    await conn.update_session(
        instructions="You are a friendly voice assistant. Answer briefly.",
        max_output_tokens=48,
        turn_detection=ServerVad(silence_duration_ms=500),
        transcription=AudioTranscription(model="gpt-4o-mini-transcribe"),
    )
    sending = asyncio.create_task(stream_file(conn, path, fast=fast))
    # Read while sending. Once all is sent, stop when no turn, transcript or reply is under way and
    # the server has been quiet for `linger` seconds (detection runs a little behind the audio).
    while True:
        try:
            event = await asyncio.wait_for(conn.recv(), linger)  # cancelling a read loses nothing
        except TimeoutError:
            if sending.done() and not bot.busy:
                break
            continue
        bot.on_event(event)
    await sending


async def run(url: str, path: str, *, fast: bool, linger: float) -> None:
    async with aural.sdk.connect(url) as conn:
        await converse(conn, path, fast=fast, linger=linger)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="an audio file (any format PyAV reads), standing in for a microphone")
    parser.add_argument("--fast", action="store_true", help="send the audio as fast as possible, not in real time")
    parser.add_argument("--linger", type=float, default=1.0, help="seconds of quiet after which the bot ends")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.file, fast=args.fast, linger=args.linger))


if __name__ == "__main__":
    main()
