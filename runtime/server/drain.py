"""Graceful shutdown: stop taking conversations, let running responses finish, then close every socket cleanly.

On SIGTERM (Kubernetes' way to stop a pod) or SIGINT, aiohttp closes the listener, so new connections are
refused, and runs the app's shutdown hooks, where `drain` runs:

1. the server is marked draining: `/healthz` answers 503 "draining" on connections still open (load balancers
   stop routing) and a websocket upgrade on one is refused with 503;
2. each conversation is closed as soon as nothing runs in it (no response, no server tool call), so a
   response in flight finishes and its client gets its `response.done`;
3. after the drain timeout (25 s by default: under Kubernetes' 30 s grace period), the conversations still busy are
   told `ShuttingDown` through their session (the same cancel path as `response.cancel`: the response ends
   `cancelled`, its `response.done` is sent) and given `CANCEL_GRACE` more to end it;
4. every socket is closed with 1001 "server shutting down", and the drivers free their engine sessions
   (`CLOSE_GRACE` for both); aiohttp's own shutdown and the engine's close follow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from dataclasses import dataclass

import structlog
from aiohttp import WSCloseCode, web

from ..session.inputs import ShuttingDown
from .connection import ConnectionDriver

DRAIN_TIMEOUT = 25.0
"""Seconds running responses get to finish (Kubernetes sends SIGKILL 30 s after SIGTERM by default)."""
CANCEL_GRACE = 2.0
"""Seconds a cancelled response gets to send its `response.done` before its socket closes anyway."""
CLOSE_GRACE = 2.0
"""Seconds a client gets to answer the close frame, and aiohttp's handlers to return, at the very end."""
GOING_AWAY = "server shutting down"

log = structlog.get_logger(__name__)


@dataclass
class Lifecycle:
    """Whether the server drains (`/healthz`, new upgrades and `aural_draining` read it)."""

    draining: bool = False


LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("lifecycle", Lifecycle)


async def drain(lifecycle: Lifecycle, drivers: Collection[ConnectionDriver], grace: float = DRAIN_TIMEOUT) -> None:
    """Drain the server: mark it draining, then close every conversation of `drivers` once its work is done, or
    cancelled after `grace` seconds (see the module's docstring)."""
    lifecycle.draining = True
    log.info("draining", conversations=len(drivers), grace_s=grace)
    await asyncio.gather(*(_drain_one(driver, grace) for driver in list(drivers)))
    log.info("drained")


async def _drain_one(driver: ConnectionDriver, grace: float) -> None:
    try:
        async with asyncio.timeout(grace):
            await driver.settled()
    except TimeoutError:
        await driver.receive(ShuttingDown())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCEL_GRACE):
                await driver.settled()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(CLOSE_GRACE):
            await driver.close(WSCloseCode.GOING_AWAY, GOING_AWAY)
            await driver.ended()
