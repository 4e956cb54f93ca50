"""What stands between a connection's frames and its session: the rate bound, and bounded decoding.

`Gate` answers each message with the client event in it, or with the `ProtocolError` that refuses it: a
message over the connection's rate (`rate_limit_exceeded`, the message dropped, the conversation kept),
or one that does not decode or breaks a bound of `Limits`. Decoding costs time in proportion to the
message, so a large one (a long audio append, a long conversation seeded at once) is decoded on a worker
thread rather than holding every other connection's events.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aural.protocols import ClientEvent, decode_client_event
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.limits import Limits

OFF_LOOP_BYTES = 256 * 1024
"""Messages from this size on are decoded on a worker thread (a few milliseconds of work or more)."""


class TokenBucket:
    """`rate` tokens a second, up to `burst` saved: a message takes one or is refused.

    Args:
        clock: seconds, monotonic (a test's own clock).
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        """Take a token if one is left; False when the rate is spent."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class Gate:
    """One connection's intake: each message is counted against the rate, then decoded and bounded."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._bucket = TokenBucket(limits.events_per_second, limits.event_burst)

    def admit(self) -> None:
        """Count one message (an event or a binary frame of audio) against the rate.

        Raises:
            ProtocolError: `rate_limit_exceeded`; the message must be dropped.
        """
        if not self._bucket.take():
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"Too many messages: at most {self._limits.events_per_second:g} a second "
                f"(bursts of {self._limits.event_burst}). This one was dropped.",
            )

    async def decode(self, data: str) -> ClientEvent:
        """The client event in a text message.

        Raises:
            ProtocolError: the message is not a valid event within the limits.
        """
        if len(data) < OFF_LOOP_BYTES:
            return decode_client_event(data, self._limits)
        return await asyncio.to_thread(decode_client_event, data, self._limits)
