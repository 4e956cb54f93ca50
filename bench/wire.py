"""A raw realtime client for the soak and load benches: JSON frames over `websockets`, as any client sends and
reads them (no SDK: the benches drop connections on purpose and read `aural.session.resumed` themselves), and
the spoken turn they send (a real espeak-ng utterance, as the tests speak it).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from tests.support.speech import speak

Event = dict[str, Any]
WIRE_RATE = 24000
RECV_TIMEOUT = 120.0
"""A guard against a hang only (a reply takes well under a second): a wait past it is a failure."""


def utterance_pcm(text: str) -> bytes:
    """`text` spoken by espeak-ng, as PCM16 mono at 24 kHz (the GA wire format)."""
    samples = speak(text, rate=WIRE_RATE)
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class Conversation:
    """One realtime connection; keeps every event it read."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[Event] = []
        self.session_id = ""

    async def send(self, event: Event) -> None:
        await self.ws.send(json.dumps(event))

    async def recv(self) -> Event:
        async with asyncio.timeout(RECV_TIMEOUT):
            event: Event = json.loads(await self.ws.recv())
        self.events.append(event)
        return event

    async def until(self, event_type: str) -> Event:
        """Read up to and including the next event of `event_type`."""
        while (event := await self.recv())["type"] != event_type:
            pass
        return event

    async def speak(self, pcm: bytes, max_tokens: int) -> None:
        """Send an utterance, commit it and ask for a response."""
        await self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode("ascii")})
        await self.send({"type": "input_audio_buffer.commit"})
        await self.respond(max_tokens)

    async def write(self, text: str, max_tokens: int) -> None:
        """Add a user text message and ask for a response."""
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        await self.send({"type": "conversation.item.create", "item": item})
        await self.respond(max_tokens)

    async def respond(self, max_tokens: int) -> None:
        await self.send({"type": "response.create", "response": {"max_output_tokens": max_tokens}})

    def drop(self) -> None:
        """Lose the connection: no close frame (a network change, a closed laptop)."""
        self.ws.transport.abort()


@asynccontextmanager
async def conversation(url: str) -> AsyncIterator[Conversation]:
    """A connection to `url`, past its first event (`session.created`, or for a resume `session.created` and
    `aural.session.resumed`); closed cleanly at the end unless dropped."""
    async with connect(url, max_size=None, open_timeout=RECV_TIMEOUT) as ws:
        client = Conversation(ws)
        created = await client.recv()
        assert created["type"] == "session.created", created
        client.session_id = created["session"]["id"]
        yield client
