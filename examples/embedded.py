"""The voice bot of `voice_bot.py` with the model in the bot's own process: no server to start, no socket.

`aural.runtime.local` builds what `aural serve` builds (the model, voice activity detection, limits) and the
SDK talks to it through an in-memory pipe, with the same events, the same code and the same limits as over
a websocket: the bot below is `voice_bot.py`'s, unchanged. The model loads once, off the event loop, and
runs on its own device thread, so the bot's loop stays free for audio.

python examples/embedded.py examples/sample.wav          # the built-in tiny model (random weights: replies are noise)
python examples/embedded.py examples/sample.wav --fast   # as fast as the model takes it
"""

from __future__ import annotations

import argparse
import asyncio

from voice_bot import converse  # examples/voice_bot.py, next to this file

import aural.runtime
import aural.sdk
from aural.runtime.logs import configure_logging


async def run(model: str, path: str, *, fast: bool, linger: float) -> None:
    async with aural.runtime.local(model=model) as runtime, aural.sdk.connect(runtime=runtime) as conn:
        await converse(conn, path, fast=fast, linger=linger)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="an audio file (any format PyAV reads), standing in for a microphone")
    parser.add_argument("--model", default="tiny", help="tiny (default), medium, a hub id or a local folder")
    parser.add_argument("--fast", action="store_true", help="send the audio as fast as possible, not in real time")
    parser.add_argument("--linger", type=float, default=1.0, help="seconds of quiet after which the bot ends")
    args = parser.parse_args()
    configure_logging("warning")  # the runtime's own logs: warnings and errors, on stderr
    asyncio.run(run(args.model, args.file, fast=args.fast, linger=args.linger))


if __name__ == "__main__":
    main()
