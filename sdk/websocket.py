"""The websocket `Transport` of `aural.protocols.transport`, on `websockets`: what `connect(url)` talks through."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from ssl import SSLContext
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from aural.protocols.models import ErrorDetail
from aural.protocols.transport import Frame, TransportClosed

from .errors import AuralConnectionError, AuralServerError

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""Largest server message accepted. Items echoed with their audio can exceed websockets' 1 MiB."""


def with_query(url: str, query: Mapping[str, str]) -> str:
    """`url` with the parameters of `query` set (its other parameters are kept)."""
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query) if key not in query]
    return urlunsplit(parts._replace(query=urlencode([*kept, *query.items()])))


class WebsocketOpener:
    """Opens websockets to one URL.

    Args:
        url: the websocket URL, such as `ws://127.0.0.1:8000/v1/realtime` (a query of its own is kept).
        api_key: sent as `Authorization: Bearer <api_key>`.
        ssl: the TLS context for a `wss://` URL; the system's by default.
    """

    def __init__(self, url: str, *, api_key: str | None = None, ssl: SSLContext | None = None) -> None:
        self.url = url
        self._api_key = api_key
        self._ssl = ssl

    async def open(self, query: Mapping[str, str], subprotocols: Sequence[str]) -> WebsocketTransport:
        """The websocket handshake with `query` added to the URL.

        Raises:
            AuralServerError: the server refused with a reason (a wrong key: HTTP 401 with OpenAI's error body).
            AuralConnectionError: the server could not be reached, or refused without one.
        """
        url = with_query(self.url, query)
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else None
        options: dict[str, Any] = {"ssl": self._ssl} if self._ssl is not None else {}  # else the system's
        if subprotocols:
            options["subprotocols"] = list(subprotocols)
        try:
            ws = await ws_connect(url, additional_headers=headers, max_size=MAX_MESSAGE_BYTES, **options)
        except InvalidStatus as exc:
            raise _refusal(exc) or AuralConnectionError(f"could not connect to {url}: {exc}") from exc
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise AuralConnectionError(f"could not connect to {url}: {exc}") from exc
        return WebsocketTransport(ws)


class WebsocketTransport:
    """One open `websockets` client connection as a `Transport`.

    Attributes:
        ws: the `websockets` connection.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @property
    def subprotocol(self) -> str | None:
        return self.ws.subprotocol

    async def send(self, frame: Frame) -> None:
        try:
            await self.ws.send(frame)
        except ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def recv(self) -> Frame:
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            raise _closed(exc) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)


def _closed(exc: ConnectionClosed) -> TransportClosed:
    """The close frame received from the server; none: the connection was lost."""
    return TransportClosed(exc.rcvd.code, exc.rcvd.reason) if exc.rcvd is not None else TransportClosed()


def _refusal(exc: InvalidStatus) -> AuralServerError | None:
    """The server's reason for refusing the upgrade (a wrong key: HTTP 401 with OpenAI's error body), if it
    gave one."""
    try:
        body = json.loads(exc.response.body or b"")
        return AuralServerError.from_detail(ErrorDetail.model_validate(body["error"]))
    except (ValueError, TypeError, KeyError):  # pydantic's ValidationError is a ValueError
        return None
