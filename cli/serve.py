"""`aural serve`: check everything, load the model and run the websocket server until interrupted.

The options and the preflight (`checks`, `models`, `access`: one line for a problem, before the model loads) need
neither torch nor transformers, so that a mistake is told in a second; the model's modules are imported after
them, and a missing runtime extra is told as such. `--tools` specs are loaded by `aural.sdk.tools.load_tools`,
checked by the runtime (`check_server_tools`) before the model loads, and handed to the app as its `ToolRunner`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from aural.protocols.limits import DEFAULT_LIMITS, Limits
from aural.runtime.engine.qwen2_audio.settings import PREFILL_CHUNK
from aural.runtime.logs import configure_logging
from aural.runtime.server.app import create_app
from aural.runtime.server.dev_tls import DevCertificateError, ensure_dev_certificates
from aural.runtime.server.drain import DRAIN_TIMEOUT
from aural.runtime.server.run import run_app
from aural.runtime.server.timeouts import Timeouts
from aural.runtime.tools import check_server_tools
from aural.sdk.tools import DEFAULT_TIMEOUT, ToolLoadError, Tools, load_tools

from . import access, checks, models, ray_serve

if TYPE_CHECKING:
    from aural.runtime.store.redis_store import RedisStore

RUNTIME_EXTRA = "pip install 'aural[runtime]'"

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `aural serve`."""
    parser.add_argument(
        "--model",
        default="tiny",
        help="a preset (tiny, medium, 7b-random), a hub id or a local folder of a Qwen2-Audio checkpoint",
    )
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=checks.port_number, default=8000, help="the TCP port (0: any free one)")
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
    parser.add_argument(
        "--kv-budget",
        type=byte_size,
        default=None,
        metavar="BYTES",
        help="KV cache for all conversations, e.g. 40GiB or 512MiB (default: 80%% of the free device memory "
        "after the model loads on a GPU, 2GiB on the CPU)",
    )
    parser.add_argument(
        "--on-full",
        choices=["wait", "error"],
        default="wait",
        help="when the KV budget is spent: a new turn waits for room, or fails with kv_budget_exceeded (default: wait)",
    )
    parser.add_argument(
        "--idle-offload",
        type=float,
        default=None,
        metavar="SECONDS",
        help="move an idle conversation's cache to host memory after this long; it comes back at its next turn "
        "(default: only when the pool needs the room)",
    )
    parser.add_argument(
        "--prefill-chunk",
        type=int,
        default=PREFILL_CHUNK,
        metavar="TOKENS",
        help=f"positions prefilled between two decode steps of the other conversations (default: {PREFILL_CHUNK})",
    )
    parser.add_argument(
        "--no-cuda-graphs", action="store_true", help="decode eagerly on CUDA instead of replaying captured graphs"
    )
    parser.add_argument("--tls-cert", help="PEM certificate: serve wss:// (the Node SDK always uses TLS)")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument(
        "--tls-self-signed",
        metavar="DIR",
        type=Path,
        help="serve wss:// with a development CA kept in DIR (made once, then reused) and a certificate it signs "
        "for localhost and --host at each start; clients trust DIR/ca.pem (Node: NODE_EXTRA_CA_CERTS=DIR/ca.pem)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=byte_size,
        default=DEFAULT_LIMITS.max_message_bytes,
        metavar="BYTES",
        help="the largest websocket message a client may send, e.g. 1MiB; a larger one closes the connection "
        "(1009) (default: 16MiB)",
    )
    parser.add_argument(
        "--events-per-second",
        type=positive,
        default=DEFAULT_LIMITS.events_per_second,
        metavar="N",
        help="messages a connection may send a second, in bursts of twice as many; one over is refused with "
        f"rate_limit_exceeded (default: {DEFAULT_LIMITS.events_per_second:g})",
    )
    access.add_arguments(parser)
    ray_serve.add_arguments(parser)
    parser.add_argument(
        "--log-level", default="info", type=str.lower, choices=checks.LOG_LEVELS, help="the least severe record logged"
    )
    parser.add_argument(
        "--log-format",
        choices=["json", "console"],
        default=None,
        help="json: one object a line; console: for people (default: console on a terminal, else json)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DRAIN_TIMEOUT,
        metavar="SECONDS",
        help=f"on SIGTERM/SIGINT, how long running responses may finish before they are cancelled "
        f"(default: {DRAIN_TIMEOUT:g}, under Kubernetes' 30 s grace period)",
    )
    silence = (
        ("--idle-timeout", Timeouts.idle, "close a connection silent this long while nothing runs in it"),
        ("--first-event-timeout", Timeouts.first_event, "close a new connection that sends no event this long"),
        ("--heartbeat", Timeouts.heartbeat, "ping every connection this often; drop one silent for half of it"),
        ("--resume-grace", Timeouts.resume_grace, "keep a dropped connection's conversation this long for a resume"),
    )
    for flag, default, what in silence:
        what = f"{what}; 0: never (default: {default:g})"
        parser.add_argument(flag, type=float, default=default, metavar="SECONDS", help=what)
    parser.add_argument(
        "--store",
        metavar="URL",
        help="save conversations in Redis (redis://HOST:PORT/DB, rediss://..., unix://PATH) so that another server "
        "sharing it resumes them once this one is gone (pip install 'aural[redis]')",
    )


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def byte_size(text: str) -> int:
    """A size such as `40GiB`, `512M`, `1.5g` or `1000000` (binary units; the `iB`/`B` suffix is optional).

    Raises:
        argparse.ArgumentTypeError: anything else, or a size under one block's worth (1 KiB).
    """
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (try 40GiB, 512MiB or a number of bytes)")
    size = int(float(match.group(1)) * _UNITS[match.group(2)])
    if size < 2**10:
        raise argparse.ArgumentTypeError(f"{text!r} is too small (1KiB at least)")
    return size


def positive(text: str) -> float:
    """A number above 0.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number above 0")
    return value


def server_tools(specs: list[str], timeout: float | None) -> Tools:
    """The tools of `--tools` specs, as the runtime will serve them.

    Raises:
        SystemExit: a spec that gives no usable tools, with the reason in one line.
    """
    sys.path.insert(0, os.getcwd())  # `--tools mymodule:attr` from the folder it is run in, as `python -m` would
    try:
        tools = load_tools(specs, timeout=timeout)
        if specs:  # the decoder's grammar compiler imports transformers: only for tools to check
            from aural.runtime.engine.tool_grammar import schema_problem

            check_server_tools(tools, schema_problem)  # Qwen2-Audio's decoder: the one `aural serve` loads
    except ToolLoadError as exc:
        raise SystemExit(f"aural serve: --tools {exc}") from None
    except ValueError as exc:
        raise SystemExit(f"aural serve: --tools: {exc}") from None
    return tools


def limits(args: argparse.Namespace) -> Limits:
    """The client limits that `--max-message-bytes` and `--events-per-second` set (the rest: defaults)."""
    rate = args.events_per_second
    return dataclasses.replace(
        DEFAULT_LIMITS,
        max_message_bytes=args.max_message_bytes,
        events_per_second=rate,
        event_burst=max(1, int(2 * rate)),
    )


def server_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context of `--tls-cert`/`--tls-key`, or of `--tls-self-signed`, which makes its own certificate
    (so it takes neither); None: plain ws://.

    Raises:
        SystemExit: status 2 after one line naming the option (see `checks.tls`; a `--tls-self-signed` folder
            that cannot be used, with the reason).
    """
    if not args.tls_self_signed:
        return checks.tls(args.tls_cert, args.tls_key)
    if args.tls_cert or args.tls_key:
        given = "--tls-cert" if args.tls_cert else "--tls-key"
        checks.fail(f"--tls-self-signed makes its own certificate: drop {given}")
    try:
        files = ensure_dev_certificates(args.tls_self_signed, args.host)
    except (DevCertificateError, OSError) as exc:
        checks.fail(f"--tls-self-signed: {exc}")
    log.info("development certificate", trust=str(files.ca), node=f"NODE_EXTRA_CA_CERTS={files.ca}")
    return checks.tls(str(files.cert), str(files.key))


def conversation_store(url: str | None) -> RedisStore | None:
    """The Redis store of `--store`, once its server answered (None: no `--store`).

    Raises:
        SystemExit: status 2 after one line: no Redis client installed, or no answer (the URL is not echoed: it may
            hold a password).
    """
    if url is None:
        return None
    try:
        from aural.runtime.store.redis_store import RedisStore, ping
    except ImportError:
        checks.fail("--store needs the Redis client: pip install 'aural[redis]'")
    try:
        asyncio.run(ping(url))
    except Exception as exc:
        checks.fail(f"--store: Redis did not answer: {exc}")
    return RedisStore(url)


def serve(args: argparse.Namespace) -> None:
    """Run the runtime with parsed `aural serve` options: every check, then the model, then the server.

    Raises:
        SystemExit: one line on stderr for a problem (status 2 before the model loads, 1 while it loads).
        ImportError: the runtime extra is not installed (`aural.cli.main` says how to install it).
    """
    configure_logging(args.log_level, args.log_format)
    context = server_tls(args)
    if args.log_level != "debug":  # the hub's HTTP client logs every request (each file of a download) at info
        for client in ("httpx", "httpx2"):
            logging.getLogger(client).setLevel(logging.WARNING)
    policy = access.access_policy(args)
    models.check_model(args.model)
    tools = server_tools(args.tools, args.tool_timeout or None)
    timeouts = Timeouts(
        heartbeat=args.heartbeat or None,
        first_event=args.first_event_timeout or None,
        idle=args.idle_timeout or None,
        resume_grace=args.resume_grace or None,
    )
    store = conversation_store(args.store)  # Redis answers (its client connects at its first command)
    if args.ray:  # the ingress replicas open their own store from the URL
        if args.tls_self_signed:
            checks.fail("--tls-self-signed is not served by --ray: give --tls-cert and --tls-key")
        ray_serve.serve_ray(args, policy, tools, limits(args), timeouts)
        return
    sockets = checks.bind(args.host, args.port)
    try:
        from . import loading  # torch and transformers take seconds to import: after every check

        engine = loading.load_engine(args, sys.stderr)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    app = create_app(
        engine,
        model_names=args.alias,
        max_sessions=args.max_sessions,
        server_tools=tools,
        access=policy,
        limits=limits(args),
        timeouts=timeouts,
        store=store,
    )
    if store is not None:
        app.on_cleanup.append(lambda _: store.close())
    run_app(app, host=args.host, port=args.port, sockets=sockets, ssl_context=context, drain_timeout=args.drain_timeout)
