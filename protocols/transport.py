"""What carries a connection's frames: a `Transport` (one connection's two directions) and an `Opener` (what
makes one per connection, with the handshake's query and offered subprotocols).

The SDK's `Connection` talks through these alone, so the same client runs over a websocket
(`aural.sdk.websocket`) or in the runtime's own process (`aural.runtime.local`, an in-memory pipe to the
same per-connection driver the server runs). Frames are the websocket's: a `str` is a text message (one JSON
event), `bytes` a binary one (raw input audio under `aural.binary-audio`). Close codes are the websocket's
too, whatever carries them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

Frame = str | bytes
"""A text message (an event, JSON) or a binary one (raw audio)."""

NORMAL_CLOSURE = 1000
GOING_AWAY = 1001
ABNORMAL_CLOSURE = 1006
"""RFC 6455's code for a connection that ended without a close frame (lost); never sent in one."""


class TransportClosed(Exception):
    """The connection is closed: by a close frame from either end (its code and reason), or lost
    (`ABNORMAL_CLOSURE`).

    Args:
        code: the close frame's code, or `ABNORMAL_CLOSURE` when there was none.
        reason: the close frame's reason.
    """

    def __init__(self, code: int = ABNORMAL_CLOSURE, reason: str = "") -> None:
        super().__init__(f"{code} {reason}".rstrip())
        self.code = code
        self.reason = reason

    @property
    def lost(self) -> bool:
        """The connection ended without a close frame (a dropped network connection, a vanished peer)."""
        return self.code == ABNORMAL_CLOSURE

    @property
    def normal(self) -> bool:
        """Closed by a close frame saying all is well (1000, or 1001: going away)."""
        return self.code in (NORMAL_CLOSURE, GOING_AWAY)


class Transport(Protocol):
    """One open connection: frames both ways, in order, then a close."""

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the two ends agreed on at the handshake, if any."""
        ...

    async def send(self, frame: Frame) -> None:
        """Send one frame; it may wait while the other end is behind (flow control).

        Raises:
            TransportClosed: the connection is closed.
        """
        ...

    async def recv(self) -> Frame:
        """The next frame from the other end. Frames that arrived before a close are still returned, in order.
        Cancelling a call loses no frame.

        Raises:
            TransportClosed: the connection is closed and every frame it carried has been returned.
        """
        ...

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the connection with a close frame (a no-op when it is closed already)."""
        ...


class Opener(Protocol):
    """Opens a `Transport` to a realtime endpoint, one per connection."""

    async def open(self, query: Mapping[str, str], subprotocols: Sequence[str]) -> Transport:
        """Open one connection.

        Args:
            query: the handshake's query parameters (`model`, `aural.resume`...).
            subprotocols: the subprotocols offered, in order of preference.

        Raises:
            ConnectionError: the endpoint could not be reached (an `OSError`, as a socket's would be).
        """
        ...
