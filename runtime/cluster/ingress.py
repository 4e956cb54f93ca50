"""The ingress deployment: the realtime websocket on Ray Serve, a thin ASGI driver of the same session core.

Serve's proxy hands each websocket to an ingress replica through FastAPI (Serve's way to websockets). The
ingress checks it as the aiohttp server's guard does (`access.admit`: an HTTP 401/403 before any upgrade),
accepts it with the subprotocol the server would choose, and gives it to `converse`, the aiohttp route's own
admission and `ConnectionDriver`, over a `StarletteTransport`. So the protocol, audio decoding, VAD and the
conversation's state all run here exactly as in `aural serve`; only the engine differs: a `RemoteEngine`,
whose calls go to the engine replicas. `create_app` still builds the runtime's state (its aiohttp
application serves no socket here, as in `local.py`).

    GET /v1/realtime   the websocket      GET /healthz   the fleet's health and KV pool (503 while draining)
    GET /v1/models     the model names    GET /metrics   this ingress' metrics and each replica's
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from fastapi import FastAPI, WebSocket
from prometheus_client import CONTENT_TYPE_LATEST
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect

from aural.protocols.limits import DEFAULT_LIMITS, Limits
from aural.protocols.transport import ABNORMAL_CLOSURE, NORMAL_CLOSURE, Frame, TransportClosed

from ..server.access import ACCESS, Access, Refusal, admit
from ..server.app import LIMITS, SESSIONS, SUBPROTOCOLS, converse, create_app, health_report, model_list
from ..server.drain import DRAIN_TIMEOUT, LIFECYCLE, drain
from ..server.metrics import METRICS
from ..server.timeouts import Timeouts
from ..server.transports import frame_size
from ..store.base import ConversationStore
from ..tools import ToolRunner
from .fleet import FleetView, ReplicaMetrics
from .remote import RemoteEngine
from .store import ActorStore

api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@dataclass(frozen=True)
class IngressSettings:
    """What `create_app` takes besides the engine (picklable: Serve ships it to every ingress replica).

    `max_sessions` bounds the conversations of one ingress replica; `access` is built from `keys`,
    `allowed_origins` and `max_sessions_per_key`.
    """

    model_names: tuple[str, ...] = ()
    max_sessions: int = 64
    keys: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] | None = None
    max_sessions_per_key: int | None = None
    server_tools: ToolRunner | None = None
    limits: Limits = DEFAULT_LIMITS
    timeouts: Timeouts = field(default_factory=Timeouts)
    drain_timeout: float = DRAIN_TIMEOUT
    """Seconds a stopping replica's running responses (ingress) or replies (engine) get to end."""
    store_url: str | None = None
    """Where conversations are saved for a resume on another ingress replica: a Redis URL, or None for the cluster's
    store actor (`store.py`)."""


class Ingress:
    """The ingress deployment's class (`deploy.py` wraps it in `serve.deployment` and `serve.ingress(api)`).

    Args:
        engine: the engine deployment's handle.
        settings: the server's settings.
    """

    def __init__(self, engine: DeploymentHandle[Any], settings: IngressSettings) -> None:
        self._handle = engine
        self._settings = settings
        self._view = FleetView()
        self._app: web.Application | None = None
        self._starting = asyncio.Lock()
        self._conversations: set[asyncio.Future[None]] = set()

    async def runtime(self) -> web.Application:
        """The runtime's state, made at the first request (the engine's model described by a replica)."""
        async with self._starting:
            if self._app is None:
                self._view.start()
                engine = await RemoteEngine.connect(self._handle, self._view.latest)
                settings = self._settings
                access = Access(
                    settings.keys,
                    allowed_origins=settings.allowed_origins,
                    max_sessions_per_key=settings.max_sessions_per_key,
                )
                app = create_app(
                    engine,
                    store=_store(settings.store_url),
                    model_names=settings.model_names,
                    max_sessions=settings.max_sessions,
                    server_tools=settings.server_tools,
                    access=access,
                    limits=settings.limits,
                    timeouts=settings.timeouts,
                )
                app[METRICS].registry.register(ReplicaMetrics(self._view))
                self._app = app
            return self._app

    async def realtime(self, websocket: WebSocket) -> None:
        app = await self.runtime()
        admitted = _admit(app, websocket.scope, websocket.headers, "/v1/realtime")
        if isinstance(admitted, Refusal):
            await websocket.send_denial_response(_refused(admitted))
            return
        if app[LIFECYCLE].draining:
            await websocket.send_denial_response(JSONResponse(_DRAINING, status_code=503))
            return
        offered = websocket.scope.get("subprotocols", [])
        subprotocol = next((name for name in offered if name in SUBPROTOCOLS), None)
        await websocket.accept(subprotocol=subprotocol)
        transport = StarletteTransport(websocket, subprotocol, app[LIMITS].max_message_bytes)
        # Serve cancels the handler when the client goes, close frame or not: the conversation must still read that
        # close (a clean end frees its cache at once; a lost connection waits for a resume), so it runs on.
        conversation = asyncio.ensure_future(converse(app, transport, websocket.query_params, admitted))
        self._conversations.add(conversation)
        conversation.add_done_callback(self._conversations.discard)
        await asyncio.shield(conversation)

    async def healthz(self) -> Response:
        report, status = health_report(await self.runtime())
        report["replicas"] = len(self._view.latest())
        return JSONResponse(report, status_code=status)

    async def models(self, request: Request) -> Response:
        app = await self.runtime()
        admitted = _admit(app, request.scope, request.headers, "/v1/models")
        if isinstance(admitted, Refusal):
            return _refused(admitted)
        return JSONResponse(model_list(app))

    async def metrics(self) -> Response:
        app = await self.runtime()
        return Response(app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def drain(self, grace: float) -> None:
        """Stop taking conversations and close this ingress' ones once their responses end (`drain.drain`)."""
        if self._app is not None:
            conversations = self._app[SESSIONS]
            await drain(self._app[LIFECYCLE], conversations, grace)


def _store(url: str | None) -> ConversationStore:
    if url is None:
        return ActorStore()
    from ..store.redis_store import RedisStore  # the `redis` extra, only when asked for

    return RedisStore(url)


def _ingress() -> Ingress:
    """The ingress of this Serve replica."""
    servable = serve.get_replica_context().servable_object
    assert isinstance(servable, Ingress)
    return servable


@api.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    await _ingress().realtime(websocket)


@api.get("/healthz")
async def healthz() -> Response:
    return await _ingress().healthz()


@api.get("/v1/models")
async def models(request: Request) -> Response:
    return await _ingress().models(request)


@api.get("/metrics")
async def metrics() -> Response:
    return await _ingress().metrics()


_DRAINING = {"error": {"type": "server_error", "code": "draining", "message": "This ingress is shutting down."}}


def _admit(app: web.Application, scope: Mapping[str, Any], headers: Mapping[str, str], path: str) -> Any:
    server = scope.get("server") or ("", 0)
    try:
        loopback = ipaddress.ip_address(server[0]).is_loopback
    except ValueError:
        loopback = False
    return admit(app[ACCESS], path, headers, headers.get("host", ""), loopback)


def _refused(refusal: Refusal) -> JSONResponse:
    body = {"error": {"type": "invalid_request_error", "code": refusal.code, "message": refusal.message}}
    return JSONResponse(body, status_code=refusal.status)


class StarletteTransport:
    """The server's end of a Starlette websocket (accepted already), as a `Transport`: a text or binary message over
    `max_bytes` closes it with 1009, as aiohttp does."""

    def __init__(self, websocket: WebSocket, subprotocol: str | None, max_bytes: int) -> None:
        self._ws = websocket
        self._subprotocol = subprotocol
        self._max_bytes = max_bytes
        self._closed: TransportClosed | None = None

    @property
    def subprotocol(self) -> str | None:
        return self._subprotocol

    async def send(self, frame: Frame) -> None:
        if self._closed is not None:
            raise TransportClosed(self._closed.code, self._closed.reason)
        try:
            if isinstance(frame, str):
                await self._ws.send_text(frame)
            else:
                await self._ws.send_bytes(frame)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:  # the peer went away under the send
            raise self._lost(getattr(exc, "code", ABNORMAL_CLOSURE)) from None

    async def recv(self) -> Frame:
        if self._closed is not None:
            raise TransportClosed(self._closed.code, self._closed.reason)
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            raise self._lost(message.get("code", ABNORMAL_CLOSURE), message.get("reason") or "")
        frame: Frame = message["text"] if message.get("text") is not None else message.get("bytes") or b""
        if frame_size(frame, self._max_bytes) > self._max_bytes:
            await self.close(1009, f"Message size exceeds the limit of {self._max_bytes} bytes")
            raise TransportClosed(1009)
        return frame

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        if self._closed is not None:
            return
        self._closed = TransportClosed(code, reason)
        with contextlib.suppress(RuntimeError, OSError):  # closed by the peer meanwhile
            await self._ws.close(code, reason)

    def _lost(self, code: int, reason: str = "") -> TransportClosed:
        self._closed = self._closed or TransportClosed(code, reason)
        return TransportClosed(self._closed.code, self._closed.reason)
