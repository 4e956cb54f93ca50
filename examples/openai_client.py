"""The official `openai` package talking to Aural: only the base URL changes.

aural serve --alias gpt-realtime &
python examples/openai_client.py examples/sample.wav
"""

from __future__ import annotations

import argparse
import asyncio
import base64

from openai import AsyncOpenAI

import aural.sdk  # only for decoding the file to 24 kHz PCM16; any audio library does


async def ask(base_url: str, path: str) -> None:
    client = AsyncOpenAI(api_key="unused", websocket_base_url=base_url)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"]})
        pcm = aural.sdk.read_audio_file(path)  # PCM16 mono 24 kHz: the GA default format
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
        await conn.input_audio_buffer.commit()
        await conn.response.create(response={"max_output_tokens": 32})
        async for event in conn:
            if event.type == "response.output_text.delta":
                print(event.delta, end="", flush=True)
            elif event.type == "error":
                print(f"\nerror: {event.error.message}")
            elif event.type == "response.done":
                print(f"\n[{event.response.status}]")
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--base-url", default="ws://127.0.0.1:8000/v1")
    args = parser.parse_args()
    asyncio.run(ask(args.base_url, args.file))


if __name__ == "__main__":
    main()
