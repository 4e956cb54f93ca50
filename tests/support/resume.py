"""Raw `websockets` clients of the resume extension (they read `aural.session.resumed`, which openai's types lack):
the realtime URL, with or without `aural.resume`, and reading events."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from websockets.asyncio.client import ClientConnection

Event = dict[str, Any]


class Listening(Protocol):
    """A test server or its client: where the server listens."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int | None: ...


def url(server: Listening, resume: str | None = None) -> str:
    query = "model=fake" + (f"&aural.resume={resume}" if resume else "")
    return f"ws://{server.host}:{server.port}/v1/realtime?{query}"


async def recv(ws: ClientConnection) -> Event:
    async with asyncio.timeout(10):
        event: Event = json.loads(await ws.recv())
    return event


async def until_type(ws: ClientConnection, event_type: str) -> list[Event]:
    events = [await recv(ws)]
    while events[-1]["type"] != event_type:
        events.append(await recv(ws))
    return events


async def text_turn(ws: ClientConnection, text: str, event_id: str | None = None) -> list[Event]:
    """A user message and a response to it (`event_id`: the response.create's), to its `response.done`."""
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
    await ws.send(json.dumps({"type": "response.create"} | ({"event_id": event_id} if event_id else {})))
    return await until_type(ws, "response.done")
