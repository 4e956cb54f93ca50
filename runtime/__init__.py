"""Aural's runtime: the OpenAI-Realtime-compatible websocket server for Qwen2-Audio.

    server/   aiohttp app, per-connection driver, the serving loop
    session/  the conversation state machine (no I/O)
    engine/   the engine interface, Qwen2-Audio on transformers, the batched device loop
    audio/    input audio decoding
    tools.py  `ToolRunner`: what the runtime needs of server-side tools

Start it with `aural serve` (see `aural.cli.serve`), embed its web app with
`aural.runtime.server.app.create_app(TransformersEngine.load("tiny"))`, or run it in a client's own process,
with no socket: `aural.sdk.connect(runtime=aural.runtime.local(model="tiny"))` (`server/local.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server.local import local

__all__ = ["local"]


def __getattr__(name: str) -> Any:
    # `local` is imported when first used: importing any part of the runtime (the session, the engine
    # interface) must not load the server and aiohttp with it.
    if name == "local":
        from .server.local import local

        return local
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
