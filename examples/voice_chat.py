"""A multi-turn voice conversation with the Aural SDK: each file is one user turn.

aural serve &                      # the built-in tiny model (random weights: replies are noise)
python examples/voice_chat.py examples/sample.wav examples/sample.wav --text "Repeat that, slowly."
"""

from __future__ import annotations

import argparse
import asyncio

import aural.sdk


async def chat(url: str, files: list[str], text: str | None) -> None:
    async with aural.sdk.connect(url) as conn:
        await conn.update_session(instructions="You are a concise voice assistant.")
        for turn, path in enumerate(files, start=1):
            if text and turn == len(files):
                await conn.add_message("user", audio=path, text=text)  # audio analysis: audio + instruction
            else:
                await conn.append_audio(path)  # voice chat: the audio alone
                await conn.commit()
            reply = conn.create_response(max_output_tokens=32)
            print(f"turn {turn}: ", end="", flush=True)
            async for delta in reply:
                print(delta, end="", flush=True)
            usage = reply.response.usage if reply.response else None
            cached = usage.input_token_details.cached_tokens if usage else 0
            print(f"\n  ({cached} prompt tokens reused from the conversation's cache)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="audio files, one per user turn")
    parser.add_argument("--text", help="an instruction sent with the last file")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/v1/realtime")
    args = parser.parse_args()
    asyncio.run(chat(args.url, args.files, args.text))


if __name__ == "__main__":
    main()
