"""Serving the app until SIGTERM or SIGINT: TLS from PEM files, the aiohttp loop, a graceful drain (`drain.py`),
the engine closed at the end."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence

import structlog
from aiohttp import web

from .app import ENGINE, SERVER_TOOLS, SESSIONS
from .drain import CLOSE_GRACE, DRAIN_TIMEOUT, LIFECYCLE, drain

log = structlog.get_logger(__name__)


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """The server's TLS context from PEM files (`key` None: the key is in the certificate file)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def run_app(
    app: web.Application,
    *,
    host: str,
    port: int,
    sockets: Sequence[socket.socket] = (),
    ssl_context: ssl.SSLContext | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
) -> None:
    """Serve `app` (made by `create_app`) on `host:port`, or on `sockets` bound to it (`aural serve` binds them
    before the model loads, so that a busy port is told at once), until SIGTERM or SIGINT; then stop listening,
    drain the conversations (running responses get `drain_timeout` seconds to finish), close the engine and
    return."""

    async def drain_conversations(_: web.Application) -> None:  # after aiohttp closed the listener
        conversations = app[SESSIONS]
        await drain(app[LIFECYCLE], conversations, drain_timeout)

    async def close_engine(_: web.Application) -> None:
        await app[ENGINE].close()

    app.on_shutdown.append(drain_conversations)
    app.on_cleanup.append(close_engine)
    if sockets:
        host, port = sockets[0].getsockname()[:2]
    address = f"[{host}]" if ":" in host else host
    url = f"{'wss' if ssl_context else 'ws'}://{address}:{port}/v1/realtime"
    tools = [tool.name for tool in app[SERVER_TOOLS].definitions]

    def listening(_: str) -> None:  # aiohttp's banner, once the socket listens
        log.info("serving", url=url, model=app[ENGINE].model_name, server_tools=tools)

    web.run_app(
        app,
        host=None if sockets else host,
        port=None if sockets else port,
        sock=list(sockets) or None,
        ssl_context=ssl_context,
        print=listening,
        shutdown_timeout=CLOSE_GRACE,
    )
