"""Serving the app until SIGTERM or SIGINT: TLS from PEM files, the aiohttp loop, a graceful drain (`drain.py`),
the engine closed at the end."""

from __future__ import annotations

import ssl

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
    ssl_context: ssl.SSLContext | None = None,
    drain_timeout: float = DRAIN_TIMEOUT,
) -> None:
    """Serve `app` (made by `create_app`) on `host:port` until SIGTERM or SIGINT; then stop listening, drain the
    conversations (running responses get `drain_timeout` seconds to finish), close the engine and return."""

    async def drain_conversations(_: web.Application) -> None:  # after aiohttp closed the listener
        conversations = app[SESSIONS]
        await drain(app[LIFECYCLE], conversations, drain_timeout)

    async def close_engine(_: web.Application) -> None:
        await app[ENGINE].close()

    app.on_shutdown.append(drain_conversations)
    app.on_cleanup.append(close_engine)
    url = f"{'wss' if ssl_context else 'ws'}://{host}:{port}/v1/realtime"
    tools = [tool.name for tool in app[SERVER_TOOLS].definitions]

    def listening(_: str) -> None:  # aiohttp's banner, once the socket listens
        log.info("serving", url=url, model=app[ENGINE].model_name, server_tools=tools)

    web.run_app(app, host=host, port=port, ssl_context=ssl_context, print=listening, shutdown_timeout=CLOSE_GRACE)
