"""The aiohttp application: the realtime websocket, health and model listing.

    GET /v1/realtime?model=NAME   websocket speaking the OpenAI Realtime (GA) events
    GET /healthz                  {"status": "ok", "degraded" or "draining" (503), "model": ..., "sessions": n}
    GET /v1/models                the served model names, OpenAI style
    GET /metrics                  Prometheus metrics (`metrics.py`)

Clients authenticate with `Authorization: Bearer <key>` or, from browsers, the subprotocol list
`realtime, openai-insecure-api-key.<key>`; `realtime` is echoed when offered and never required.
A client that offers `aural.binary-audio` (and not `realtime`) may send input audio as binary frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog
from aiohttp import web

from aural.protocols import encode_event
from aural.protocols.errors import ErrorCode, ProtocolError

from ..audio.vad import SileroVad
from ..engine.base import Engine
from ..session.session import ConversationSession
from ..session.wire_errors import error_event
from ..tools import NO_TOOLS, ToolRunner, check_server_tools
from .commands import SpeechModel
from .connection import BINARY_AUDIO, ConnectionDriver
from .drain import LIFECYCLE, Lifecycle
from .metrics import METRICS, Metrics, serve_metrics
from .timeouts import TIMEOUTS, Timeouts

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # OpenAI accepts appends of up to 15 MiB
ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
MODEL_NAMES: web.AppKey[tuple[str, ...]] = web.AppKey("model_names", tuple)
SESSIONS: web.AppKey[set[ConnectionDriver]] = web.AppKey("sessions", set)
MAX_SESSIONS: web.AppKey[int] = web.AppKey("max_sessions", int)
VAD: web.AppKey[SpeechModel] = web.AppKey("vad", SpeechModel)
SERVER_TOOLS: web.AppKey[ToolRunner] = web.AppKey("server_tools")


def create_app(
    engine: Engine,
    *,
    model_names: Sequence[str] = (),
    max_sessions: int = 64,
    server_tools: ToolRunner | None = None,
    vad: SpeechModel | None = None,
    timeouts: Timeouts | None = None,
) -> web.Application:
    """The runtime's web application.

    Args:
        engine: the loaded model, shared by all sessions.
        model_names: the names clients may ask for in `?model=` (the engine's own name always works).
        max_sessions: concurrent conversations; the next one is refused with an `error` event.
        server_tools: functions the runtime offers to every conversation's model and runs itself; the
            client sees their calls and outputs as items (see `ConversationSession`).
        vad: the voice activity model for server VAD; silero-vad by default.
        timeouts: how long a connection may stay silent (`Timeouts`' defaults when None).

    Raises:
        ValueError: server tools the runtime cannot serve (see `check_server_tools`).
    """
    app = web.Application()
    app[ENGINE] = engine
    app[MODEL_NAMES] = (engine.model_name, *model_names)
    app[SESSIONS] = set()
    app[MAX_SESSIONS] = max_sessions
    app[VAD] = vad or SileroVad.load()
    app[SERVER_TOOLS] = server_tools if server_tools is not None else NO_TOOLS
    check_server_tools(app[SERVER_TOOLS], engine.capabilities.check_schema)
    app[TIMEOUTS] = timeouts or Timeouts()
    app[LIFECYCLE] = lifecycle = Lifecycle()
    app[METRICS] = Metrics(engine, conversations=lambda: len(app[SESSIONS]), draining=lambda: lifecycle.draining)
    app.router.add_get("/v1/realtime", realtime)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", serve_metrics)
    return app


async def _refuse(
    request: web.Request, ws: web.WebSocketResponse, code: ErrorCode, message: str, param: str | None = None
) -> None:
    request.app[METRICS].errors.labels(code.value).inc()
    await ws.send_str(encode_event(error_event(ProtocolError(code, message, param=param))))
    await ws.close(code=1008, message=message[:120].encode())


async def realtime(request: web.Request) -> web.WebSocketResponse:
    """Upgrade to a websocket and run one conversation on it."""
    app = request.app
    if app[LIFECYCLE].draining:  # a kept-alive HTTP connection: the listener is closed already
        raise web.HTTPServiceUnavailable(text="The server is shutting down; connect again to reach another one.")
    protocols = ("realtime", BINARY_AUDIO)
    timeouts = app[TIMEOUTS]
    ws = web.WebSocketResponse(protocols=protocols, max_msg_size=MAX_MESSAGE_BYTES, heartbeat=timeouts.heartbeat)
    await ws.prepare(request)
    names = app[MODEL_NAMES]
    requested = request.query.get("model")
    if requested is not None and requested not in names:
        served = ", ".join(f"'{n}'" for n in names)
        await _refuse(
            request, ws, ErrorCode.MODEL_NOT_FOUND, f"Model '{requested}' is not served here; try {served}.", "model"
        )
        return ws
    if len(app[SESSIONS]) >= app[MAX_SESSIONS]:
        await _refuse(request, ws, ErrorCode.TOO_MANY_SESSIONS, "The server is at its session limit; try again later.")
        return ws
    server_tools = app[SERVER_TOOLS]
    session = ConversationSession(
        requested or names[0],
        app[ENGINE].capabilities,
        server_tools=server_tools.definitions,
        max_tool_rounds=server_tools.max_rounds,
    )
    driver = ConnectionDriver(ws, app[ENGINE], session, app[VAD], server_tools, metrics=app[METRICS], timeouts=timeouts)
    app[SESSIONS].add(driver)
    try:
        await driver.run()
    finally:
        app[SESSIONS].discard(driver)
    return ws


async def healthz(request: web.Request) -> web.Response:
    """The engine's health (a reason when degraded), the model's name, the live conversations and, when the
    engine has one, its KV pool: blocks used and free, conversations resident in it and offloaded to host.
    While the server drains, "draining" with 503, so that load balancers stop routing to it."""
    app = request.app
    engine = app[ENGINE]
    health = engine.health()
    draining = app[LIFECYCLE].draining
    status = "draining" if draining else health.status
    report: dict[str, object] = {"status": status, "model": engine.model_name, "sessions": len(app[SESSIONS])}
    if health.reason is not None:
        report["reason"] = health.reason
    stats = engine.stats()
    if stats is not None:
        report["kv_pool"] = {
            "block_size": stats.block_size,
            "blocks_total": stats.blocks_total,
            "blocks_used": stats.blocks_used,
            "blocks_free": stats.blocks_free,
            "bytes_per_block": stats.bytes_per_block,
            "conversations_resident": stats.conversations_resident,
            "conversations_offloaded": stats.conversations_offloaded,
        }
    return web.json_response(report, status=503 if draining else 200)


async def models(request: web.Request) -> web.Response:
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "aural"} for name in request.app[MODEL_NAMES]]
    return web.json_response({"object": "list", "data": data})
