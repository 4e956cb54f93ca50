"""The server's ends of a connection, as `Transport`s (`aural.protocols.transport`): an aiohttp websocket's, and
an in-memory pipe's, whose other end a client in the same process holds (`local.py`).

The pipe behaves as a websocket does where the driver and the SDK can tell: frames arrive in order, a close
carries its code and reason both ways, frames sent before a close are still read after it, a sender waits
while `PIPE_BYTES` are unread (flow control, where a socket's buffers would fill), and a text or binary message
over the server's `max_message_bytes` closes the connection with 1009, as aiohttp does.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from aural.protocols.transport import Frame, TransportClosed

PIPE_BYTES = 1024 * 1024
"""Unread bytes (characters of text) a pipe holds each way before a sender waits: about what the kernel's and
the websocket libraries' buffers hold on a loopback connection. A larger frame still goes through alone."""


class WebsocketTransport:
    """The server's end of an aiohttp websocket (prepared already)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws

    @property
    def subprotocol(self) -> str | None:
        return self._ws.ws_protocol

    async def send(self, frame: Frame) -> None:
        if self._ws.closed:
            raise TransportClosed(self._ws.close_code or WSCloseCode.ABNORMAL_CLOSURE)
        try:
            if isinstance(frame, str):
                await self._ws.send_str(frame)
            else:
                await self._ws.send_bytes(frame)
        except ConnectionResetError:  # lost before the read loop saw it (aiohttp: "closing transport")
            raise TransportClosed() from None

    async def recv(self) -> Frame:
        message = await self._ws.receive()
        if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
            data: Frame = message.data
            return data
        if message.type == WSMsgType.CLOSE:  # the client's close frame
            raise TransportClosed(message.data, message.extra or "")
        if isinstance(message.data, WebSocketError):  # a frame over the size limit, or not websocket at all:
            raise TransportClosed(message.data.code, str(message.data))  # aiohttp closed with its code; not lost
        # CLOSING, CLOSED, ERROR: the connection lost (aiohttp reports that with close code 1000 too: not a close)
        raise TransportClosed()

    async def close(self, code: int = WSCloseCode.OK, reason: str = "") -> None:
        await self._ws.close(code=code, message=reason.encode())


class _Channel:
    """Frames one way, then a close; a sender waits while `capacity` bytes are unread."""

    def __init__(self, capacity: int) -> None:
        self._frames: deque[Frame] = deque()
        self._unread = 0
        self._capacity = capacity
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed: TransportClosed | None = None

    async def put(self, frame: Frame) -> None:
        while self.closed is None and self._unread >= self._capacity:
            self._writable.clear()
            await self._writable.wait()
        if self.closed is not None:
            raise TransportClosed(self.closed.code, self.closed.reason)
        self._frames.append(frame)
        self._unread += len(frame)
        self._readable.set()

    async def get(self) -> Frame:
        while not self._frames:
            if self.closed is not None:
                raise TransportClosed(self.closed.code, self.closed.reason)
            self._readable.clear()
            await self._readable.wait()
        frame = self._frames.popleft()
        self._unread -= len(frame)
        if self._unread < self._capacity:
            self._writable.set()
        return frame

    def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = TransportClosed(code, reason)
        self._readable.set()
        self._writable.set()


class PipeEnd:
    """One end of an in-memory connection (made by `pipe`)."""

    def __init__(self, inbox: _Channel, outbox: _Channel, subprotocol: str | None, max_bytes: int | None) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self._subprotocol = subprotocol
        self._max_bytes = max_bytes

    @property
    def subprotocol(self) -> str | None:
        return self._subprotocol

    async def send(self, frame: Frame) -> None:
        await self._outbox.put(frame)

    async def recv(self) -> Frame:
        frame = await self._inbox.get()
        if self._max_bytes is not None and frame_size(frame, self._max_bytes) > self._max_bytes:
            await self.close(WSCloseCode.MESSAGE_TOO_BIG, f"Message size exceeds the limit of {self._max_bytes} bytes")
            raise TransportClosed(WSCloseCode.MESSAGE_TOO_BIG)
        return frame

    async def close(self, code: int = WSCloseCode.OK, reason: str = "") -> None:
        self._outbox.close(code, reason)
        self._inbox.close(code, reason)


def frame_size(frame: Frame, limit: int) -> int:
    """The frame's size on a websocket (UTF-8 bytes for text), counted only as far as `limit` needs."""
    if isinstance(frame, bytes) or len(frame) * 4 <= limit:  # UTF-8 takes at most 4 bytes a character
        return len(frame)
    return len(frame.encode("utf-8", "surrogatepass"))


def pipe(subprotocol: str | None, max_message_bytes: int) -> tuple[PipeEnd, PipeEnd]:
    """A connected pair of ends: (the client's, the server's). The server's end closes the connection with 1009
    on a client message over `max_message_bytes`."""
    up, down = _Channel(PIPE_BYTES), _Channel(PIPE_BYTES)
    return PipeEnd(down, up, subprotocol, None), PipeEnd(up, down, subprotocol, max_message_bytes)
