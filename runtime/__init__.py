"""Aural's runtime: the OpenAI-Realtime-compatible websocket server for Qwen2-Audio.

    server/   aiohttp app and per-connection driver
    session/  the conversation state machine (no I/O)
    engine/   the engine interface, Qwen2-Audio on transformers, the batched device loop
    audio/    input audio decoding

Start it with `aural serve` (see `aural.runtime.serve`) or embed it with
`aural.runtime.server.app.create_app(TransformersEngine.load("tiny"))`.
"""
