"""The aiohttp application: the realtime websocket, health and model listing.

    GET /v1/realtime?model=NAME   websocket speaking the OpenAI Realtime (GA) events
        &aural.resume=SESSION_ID  takes over a conversation whose connection dropped (`ConnectionDriver`), live
                                  here or, with a conversation store, saved by another server (`aural.runtime.store`)
    GET /healthz                  {"status": "ok", "degraded" or "draining" (503), "model": ..., "sessions": n}
    GET /v1/models                the served model names, OpenAI style
    POST /v1/realtime/client_secrets   a short-lived key for a browser, OpenAI style (`client_secrets.py`)
    GET /metrics                  Prometheus metrics (`metrics.py`)
    GET /, /static/...            the browser demo (`demo.py`)

Clients authenticate with `Authorization: Bearer <key>` or, from browsers, the subprotocol list
`realtime, openai-insecure-api-key.<key>`; `realtime` is echoed when offered and never required. Keys,
client secrets, allowed origins and the per-key session cap are checked by `access.py`.
A client that offers `aural.binary-audio` (and not `realtime`) may send input audio as binary frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog
from aiohttp import web

from aural.protocols import encode_event
from aural.protocols.codec import close_reason
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.extensions import BINARY_AUDIO
from aural.protocols.limits import DEFAULT_LIMITS, Limits
from aural.protocols.models import SessionConfig
from aural.protocols.server_events import RESUME_QUERY
from aural.protocols.transport import Transport

from ..audio.vad import SileroVad
from ..engine.base import Engine
from ..session.items import ConversationBounds
from ..session.session import ConversationSession
from ..session.snapshot import Snapshot
from ..session.wire_errors import error_event
from ..store.base import ConversationStore
from ..tools import NO_TOOLS, ToolRunner, check_server_tools
from .access import CALLER, Access, Caller, install_access, key_slots
from .commands import SpeechModel
from .connection import ConnectionDriver
from .demo import install_demo
from .drain import LIFECYCLE, Lifecycle
from .metrics import METRICS, Metrics, serve_metrics
from .timeouts import TIMEOUTS, Timeouts
from .transports import WebsocketTransport

log = structlog.get_logger(__name__)

ENGINE: web.AppKey[Engine] = web.AppKey("engine", Engine)
MODEL_NAMES: web.AppKey[tuple[str, ...]] = web.AppKey("model_names", tuple)
SESSIONS: web.AppKey[set[ConnectionDriver]] = web.AppKey("sessions", set)
MAX_SESSIONS: web.AppKey[int] = web.AppKey("max_sessions", int)
VAD: web.AppKey[SpeechModel] = web.AppKey("vad", SpeechModel)
SERVER_TOOLS: web.AppKey[ToolRunner] = web.AppKey("server_tools")
LIMITS: web.AppKey[Limits] = web.AppKey("limits", Limits)
BOUNDS: web.AppKey[ConversationBounds] = web.AppKey("bounds", ConversationBounds)
STORE: web.AppKey[ConversationStore | None] = web.AppKey("store")


def create_app(
    engine: Engine,
    *,
    model_names: Sequence[str] = (),
    max_sessions: int = 64,
    server_tools: ToolRunner | None = None,
    vad: SpeechModel | None = None,
    access: Access | None = None,
    limits: Limits = DEFAULT_LIMITS,
    bounds: ConversationBounds | None = None,
    timeouts: Timeouts | None = None,
    store: ConversationStore | None = None,
) -> web.Application:
    """The runtime's web application.

    Args:
        engine: the loaded model, shared by all sessions.
        model_names: the names clients may ask for in `?model=` (the engine's own name always works).
        max_sessions: concurrent conversations; the next one is refused with an `error` event.
        server_tools: functions the runtime offers to every conversation's model and runs itself; the
            client sees their calls and outputs as items (see `ConversationSession`).
        vad: the voice activity model for server VAD; silero-vad by default.
        access: keys, client secrets, allowed origins, per-key cap; by default an open server for loopback use.
        limits: what one client event may hold and how many a connection may send (`Limits`).
        bounds: what one conversation may hold (`ConversationBounds`' defaults when None).
        timeouts: how long a connection may stay silent (`Timeouts`' defaults when None).
        store: where conversations are saved, so that another server sharing it resumes them by id once this one is
            gone (None: resumes reach only conversations live here).

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
    app[LIMITS] = limits
    app[BOUNDS] = bounds or ConversationBounds()
    check_server_tools(app[SERVER_TOOLS], engine.capabilities.check_schema)
    app[TIMEOUTS] = timeouts or Timeouts()
    app[STORE] = store
    app[LIFECYCLE] = lifecycle = Lifecycle()
    app[METRICS] = Metrics(engine, conversations=lambda: len(app[SESSIONS]), draining=lambda: lifecycle.draining)
    app.router.add_get("/v1/realtime", realtime)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", serve_metrics)
    install_demo(app)
    install_access(app, access or Access(), lambda pinned: _conversation(app, app[MODEL_NAMES][0], pinned).config)
    return app


def _conversation(
    app: web.Application, model: str, pinned: SessionConfig | None, restored: Snapshot | None = None
) -> ConversationSession:
    server_tools = app[SERVER_TOOLS]
    return ConversationSession(
        model,
        app[ENGINE].capabilities,
        server_tools=server_tools.definitions,
        max_tool_rounds=server_tools.max_rounds,
        bounds=app[BOUNDS],
        pinned=pinned,
        restored=restored,
    )


SUBPROTOCOLS = ("realtime", BINARY_AUDIO)
"""The subprotocols the server takes, in its order of preference."""


async def _refuse(app: web.Application, ws: Transport, code: ErrorCode, message: str, param: str | None = None) -> None:
    app[METRICS].errors.labels(code.value).inc()
    await ws.send(encode_event(error_event(ProtocolError(code, message, param=param))))
    await ws.close(1008, close_reason(message).decode())


async def realtime(request: web.Request) -> web.WebSocketResponse:
    """Upgrade to a websocket and run one conversation on it."""
    app = request.app
    if app[LIFECYCLE].draining:  # a kept-alive HTTP connection: the listener is closed already
        raise web.HTTPServiceUnavailable(text="The server is shutting down; connect again to reach another one.")
    max_bytes, heartbeat = app[LIMITS].max_message_bytes, app[TIMEOUTS].heartbeat
    ws = web.WebSocketResponse(protocols=SUBPROTOCOLS, max_msg_size=max_bytes, heartbeat=heartbeat)
    await ws.prepare(request)
    await converse(app, WebsocketTransport(ws), request.query, request[CALLER])
    return ws


async def converse(app: web.Application, ws: Transport, query: Mapping[str, str], caller: Caller) -> None:
    """Run the conversation a connection asks for on its open transport, until the conversation is done with it:
    a new one for the model its query names, or the one it resumes (`aural.resume`); or refuse it with an
    `error` event and a close (1008). The websocket route and the in-process runtime (`local.py`) both come here.
    """
    limits, names = app[LIMITS], app[MODEL_NAMES]
    requested = query.get("model")
    if requested is not None and requested not in names:
        served = ", ".join(f"'{n}'" for n in names)
        shown = requested if len(requested) <= limits.max_name_chars else f"{requested[: limits.max_name_chars]}..."
        await _refuse(app, ws, ErrorCode.MODEL_NOT_FOUND, f"Model '{shown}' is not served here; try {served}.", "model")
        return
    if (resumed := query.get(RESUME_QUERY)) is not None:
        await _resume(app, ws, resumed, caller)
        return
    await _run(app, ws, caller, _conversation(app, requested or names[0], caller.session))


async def _run(
    app: web.Application, ws: Transport, caller: Caller, session: ConversationSession, restored: Snapshot | None = None
) -> None:
    """Run a conversation on `ws` within the server's and the caller's key's session caps: a new one, or one
    `restored` from the store (whose first socket resumes it)."""
    if len(app[SESSIONS]) >= app[MAX_SESSIONS]:
        await _refuse(app, ws, ErrorCode.TOO_MANY_SESSIONS, "The server is at its session limit; try again later.")
        return
    slots = key_slots(app)
    if not slots.take(caller):
        await _refuse(app, ws, ErrorCode.TOO_MANY_SESSIONS, "This key is at its session limit; try again later.")
        return
    driver = ConnectionDriver(
        app[ENGINE],
        session,
        app[VAD],
        app[SERVER_TOOLS],
        metrics=app[METRICS],
        timeouts=app[TIMEOUTS],
        limits=app[LIMITS],
        owner=caller.key_id,
        store=app[STORE],
        restored=restored is not None,
        last_event_id=restored.last_event_id if restored else None,
    )
    app[SESSIONS].add(driver)

    def ended() -> None:
        app[SESSIONS].discard(driver)
        slots.give_back(caller)

    driver.start(on_end=ended)
    await driver.serve(ws)


async def _resume(app: web.Application, ws: Transport, session_id: str, caller: Caller) -> None:
    """Hand `ws` the conversation `session_id`: live here, or else restored from the store; or refuse it."""
    driver = _resumable(app, session_id, caller.key_id)
    if driver is None and (snapshot := await _stored(app, session_id, caller.key_id)) is not None:
        driver = _resumable(app, session_id, caller.key_id)  # another connection restored it meanwhile
        if driver is None:
            await _run(app, ws, caller, _conversation(app, snapshot.config.model or "", None, snapshot), snapshot)
            return
    if driver is None or not await driver.serve(ws):
        message = f"No conversation '{session_id[:40]}' to resume here: it ended, or its grace period passed."
        await _refuse(app, ws, ErrorCode.SESSION_NOT_FOUND, message, RESUME_QUERY)


async def _stored(app: web.Application, session_id: str, key_id: str | None) -> Snapshot | None:
    """The conversation `session_id` as the store keeps it, if the caller's key opened it (as `_resumable`)."""
    store = app[STORE]
    if store is None or len(session_id) > app[LIMITS].max_name_chars:
        return None
    try:
        snapshot = await store.load(session_id)
    except Exception:  # the store is unreachable, or holds what this runtime cannot read: as good as nothing
        log.exception("loading a stored conversation failed", session=session_id)
        return None
    return snapshot if snapshot is not None and snapshot.owner == key_id else None


def _resumable(app: web.Application, session_id: str, key_id: str | None) -> ConnectionDriver | None:
    """The live conversation `session_id` that the caller's key opened, if any (a client of another key is told
    what it would be told of a conversation that does not exist)."""
    for driver in app[SESSIONS]:
        if driver.session_id == session_id and driver.serving and driver.owner == key_id:
            return driver
    return None


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz` (see `health_report`)."""
    report, status = health_report(request.app)
    return web.json_response(report, status=status)


def health_report(app: web.Application) -> tuple[dict[str, object], int]:
    """The engine's health (a reason when degraded), the model's name, the live conversations and, when the
    engine has one, its KV pool: blocks used and free, conversations resident in it and offloaded to host.
    While the server drains, "draining" with 503, so that load balancers stop routing to it. With its HTTP status."""
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
    return report, 503 if draining else 200


async def models(request: web.Request) -> web.Response:
    return web.json_response(model_list(request.app))


def model_list(app: web.Application) -> dict[str, object]:
    """`GET /v1/models`' body: the served model names, OpenAI style."""
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "aural"} for name in app[MODEL_NAMES]]
    return {"object": "list", "data": data}
