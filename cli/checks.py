"""`aural serve`'s preflight: its arguments, files, TLS and port checked before torch is imported and the model
loads (which takes seconds to minutes), each problem told in one line naming the option, with exit status 2.

The port is not only checked but bound here, and the bound sockets are what the server listens on once the model
has loaded: nothing can take the port in between, and a client that connects early is refused (nothing listens
yet) rather than left waiting.
"""

from __future__ import annotations

import argparse
import errno
import socket
import ssl
import sys
from typing import NoReturn

from aural.runtime.server.run import tls_context

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def fail(message: str, status: int = 2) -> NoReturn:
    """End `aural serve` with one line on stderr.

    Raises:
        SystemExit: always, with `status` (2: a usage problem, 1: a failure while running).
    """
    print(f"aural serve: {message}", file=sys.stderr)
    raise SystemExit(status)


def port_number(text: str) -> int:
    """A TCP port, 0 to 65535 (0: one the system picks).

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return port


def tls(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The TLS context of `--tls-cert` and `--tls-key` (None: neither given, plain ws://).

    Raises:
        SystemExit: status 2 after one line naming the option: one without the other (half of them would silently
            serve ws://), a file that cannot be read, or PEM files that do not make a certificate and its key.
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        given, missing = ("--tls-cert", "--tls-key") if cert else ("--tls-key", "--tls-cert")
        fail(f"{given} needs {missing}: give both to serve wss://, or neither")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            fail(f"{option} {path}: {exc.strerror or exc}")
    try:
        return tls_context(cert, key)
    except ssl.SSLError as exc:
        fail(f"--tls-cert {cert} and --tls-key {key} are not a PEM certificate and its key ({exc.reason or exc})")


def bind(host: str, port: int) -> list[socket.socket]:
    """Sockets bound (not yet listening) to every address of `host` at `port`, as the server would bind them.

    Raises:
        SystemExit: status 2 after one line: a host that does not resolve or is not this machine's, a port in use
            or one that needs privileges.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"--host {host}: {exc.strerror}")
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio does: a restart binds at once
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        fail(_bind_problem(host, port, exc))
    return sockets


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"--port {port} is in use on {host} (another server?): stop it or pick another --port"
    if exc.errno == errno.EACCES:
        return f"--port {port}: permission denied (ports below 1024 need privileges): pick another --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine"
    return f"--host {host} --port {port}: {exc.strerror or exc}"
