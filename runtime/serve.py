"""`aural serve`: load the model and run the websocket server until interrupted."""

from __future__ import annotations

import argparse
import os
import ssl
import sys

import structlog
from aiohttp import web

from .engine.qwen2_audio.engine import TransformersEngine
from .logs import configure_logging
from .server.app import create_app
from .tools import DEFAULT_TIMEOUT, ServerTools, ToolLoadError

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `aural serve`."""
    parser.add_argument(
        "--model", default="tiny", help="tiny (default), medium, a hub id or a local folder of a Qwen2-Audio checkpoint"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: CUDA when present")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="auto: bf16 on CUDA, else fp32",
    )
    parser.add_argument(
        "--alias", action="append", default=[], help="another model name clients may ask for (repeatable)"
    )
    parser.add_argument("--max-sessions", type=int, default=64, help="concurrent conversations")
    parser.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="server-side tools, run by the runtime: a function, a list of them or a dict name → function, "
        "importable from the current folder (repeatable)",
    )
    parser.add_argument(
        "--tool-timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds a server tool's call may run; 0: no limit"
    )
    parser.add_argument("--tls-cert", help="PEM certificate: serve wss:// (the Node SDK always uses TLS)")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--log-level", default="info")


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """The server's TLS context from PEM files (`key` None: the key is in the certificate file)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def serve(args: argparse.Namespace) -> None:
    """Run the runtime with parsed `aural serve` options."""
    configure_logging(args.log_level)
    sys.path.insert(0, os.getcwd())  # `--tools mymodule:attr` from the folder it is run in, as `python -m` would
    try:
        tools = ServerTools.load(args.tools, timeout=args.tool_timeout or None)
    except ToolLoadError as exc:
        raise SystemExit(f"aural serve: {exc}") from None
    engine = TransformersEngine.load(args.model, device=args.device, dtype=args.dtype)
    app = create_app(engine, model_names=args.alias, max_sessions=args.max_sessions, server_tools=tools)

    async def close_engine(_: web.Application) -> None:
        await engine.close()

    app.on_cleanup.append(close_engine)
    context = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    scheme = "wss" if context else "ws"
    url = f"{scheme}://{args.host}:{args.port}/v1/realtime"
    log.info("serving", url=url, model=engine.model_name, server_tools=[tool.name for tool in tools.definitions])
    web.run_app(app, host=args.host, port=args.port, ssl_context=context, print=None)
