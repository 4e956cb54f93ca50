"""How long a connection may stay silent before the server lets it go.

A conversation holds one of the server's `max_sessions` slots for as long as its socket is open, so a client
that connects and then does nothing would hold its slot forever (64 of them fill the server). Three limits:

- `heartbeat`: aiohttp pings every `heartbeat` seconds and drops a peer that does not answer within half of
  it (the connection is dead: a vanished laptop, a half-open TCP connection).
- `first_event`: a new connection must send its first event within this long (a client that upgraded and
  then stalls, on purpose or not).
- `idle`: wall-clock time with nothing in either direction, while no response or server tool call runs
  (a client that answers pings but says nothing). A response streaming, or a long tool call, is not idle.

A connection that outlives `first_event` or `idle` gets an `error` event (code `idle_timeout`) and a close
with code 1000. None disables a limit.

`resume_grace` is how long a conversation whose socket dropped (no clean close) waits for a connection that
resumes it (`?aural.resume=<session id>`) before it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Timeouts:
    """A connection's limits, in seconds (None: no limit)."""

    heartbeat: float | None = 30.0
    first_event: float | None = 30.0
    idle: float | None = 600.0
    resume_grace: float | None = 60.0


TIMEOUTS: web.AppKey[Timeouts] = web.AppKey("timeouts", Timeouts)


class IdleWatch:
    """One connection's silence, measured against its `Timeouts`.

    Args:
        timeouts: the limits.
        clock: seconds, monotonic (the event loop's clock).
    """

    def __init__(self, timeouts: Timeouts, clock: Callable[[], float] = time.monotonic) -> None:
        self._timeouts = timeouts
        self._clock = clock
        self._last = clock()
        self._heard = False

    def heard(self) -> None:
        """The client sent a message."""
        self._heard = True
        self._last = self._clock()

    def spoke(self) -> None:
        """The server sent an event."""
        self._last = self._clock()

    async def expired(self, busy: Callable[[], bool]) -> str:
        """Wait until the connection has been silent past its limit while not `busy`; returns why, as a
        sentence for the client. Never returns when no limit applies."""
        while True:
            limit, why = self._limit()
            if limit is None:
                await asyncio.get_running_loop().create_future()  # until the connection ends and cancels this
                continue
            remaining = self._last + limit - self._clock()
            if remaining <= 0:
                if not busy():
                    return why
                self._last = self._clock()  # work the client waits for is activity
                remaining = limit
            await asyncio.sleep(remaining)

    def _limit(self) -> tuple[float | None, str]:
        idle = self._timeouts.idle
        idle_why = f"The connection was idle for {idle:g} s, so the server closed it; reconnect to go on."
        first = self._timeouts.first_event
        if self._heard or first is None or (idle is not None and idle <= first):
            return idle, idle_why
        return first, f"No event arrived within {first:g} s of connecting, so the server closed the connection."
