"""`aural serve`'s access options: API keys, the bind policy, allowed origins, the per-key session cap.

Keys come from `AURAL_API_KEYS` (comma-separated) and `--api-key-file` (one a line, `#` comments). Without
keys the server binds to loopback only: a non-loopback `--host` needs `--allow-unauthenticated`, so that a
model is never put on a network open to anyone by accident. A problem is one line and exit status 2, before
the model loads.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Mapping

import structlog

from aural.runtime.server.access import Access

from .checks import fail

KEYS_VARIABLE = "AURAL_API_KEYS"

log = structlog.get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The access options of `aural serve`."""
    parser.add_argument(
        "--api-key-file",
        metavar="PATH",
        help=f"server keys, one a line ('#' comments); also the comma-separated {KEYS_VARIABLE} variable",
    )
    parser.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a non-loopback --host without keys: anyone who can reach the port can use it",
    )
    parser.add_argument(
        "--allowed-origins",
        metavar="ORIGINS",
        help="comma-separated browser origins allowed, or '*' (default: loopback origins on a loopback host, "
        "else the same origin)",
    )
    parser.add_argument(
        "--max-sessions-per-key",
        type=int,
        default=None,
        metavar="N",
        help="concurrent conversations of one key, its client secrets' included (default: only --max-sessions)",
    )


def access_policy(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Access:
    """The access policy of parsed `aural serve` options, logged (how many keys, never which).

    Raises:
        SystemExit: status 2 with one line on stderr, for an unusable key file or an open non-loopback host.
    """
    keys = [key.strip() for key in environ.get(KEYS_VARIABLE, "").split(",") if key.strip()]
    if args.api_key_file is not None:
        keys += _read_keys(args.api_key_file)
    if args.max_sessions_per_key is not None and args.max_sessions_per_key < 1:
        fail("--max-sessions-per-key must be at least 1")
    if keys:
        log.info("API keys required", keys=len(set(keys)))
    elif not is_loopback(args.host):
        if not args.allow_unauthenticated:
            fail(
                f"--host {args.host} is not loopback and no API key is set: set {KEYS_VARIABLE} or --api-key-file, "
                "or pass --allow-unauthenticated"
            )
        log.warning("serving without API keys: anyone who can reach the port can use it", host=args.host)
    origins = None
    if args.allowed_origins is not None:
        origins = tuple(origin.strip() for origin in args.allowed_origins.split(",") if origin.strip())
    return Access(
        keys=tuple(dict.fromkeys(keys)), allowed_origins=origins, max_sessions_per_key=args.max_sessions_per_key
    )


def is_loopback(host: str) -> bool:
    """Whether `--host` binds to the loopback interface only (`localhost`, `127.x.x.x`, `::1`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_keys(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--api-key-file {path}: {getattr(exc, 'strerror', None) or exc}")
    keys = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not keys:
        fail(f"--api-key-file {path}: no key in it (one a line; '#' starts a comment)")
    return keys
