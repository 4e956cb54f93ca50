"""Aural's runtime: the OpenAI-Realtime-compatible websocket server for Qwen2-Audio.

    server/   aiohttp app, per-connection driver, the serving loop
    session/  the conversation state machine (no I/O)
    engine/   the engine interface, Qwen2-Audio on transformers, the batched device loop
    audio/    input audio decoding
    tools.py  `ToolRunner`: what the runtime needs of server-side tools

Start it with `aural serve` (see `aural.cli.serve`) or embed it with
`aural.runtime.server.app.create_app(TransformersEngine.load("tiny"))`.
"""
