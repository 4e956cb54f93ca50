"""Who may use the server: API keys, client secrets, browser origins and a per-key session cap.

One middleware guards the realtime websocket, `/v1/models` and `/v1/realtime/client_secrets` (never
`/healthz`, which load balancers probe without keys), answering before any upgrade:

- A request carrying an `Origin` header (a browser) whose origin is not allowed gets HTTP 403. By
  default a loopback server allows only loopback origins (`http(s)://localhost`, `127.0.0.1`, `[::1]`,
  any port) — not even "same origin", which a DNS-rebinding page would pass — and any other server only
  the same origin as its `Host`. Clients that send no `Origin` (Python, Node) are unaffected.
- With keys configured, the caller needs `Authorization: Bearer <key>` or, from a browser, the subprotocol
  list `realtime, openai-insecure-api-key.<key>`; else HTTP 401 with an OpenAI-style error body. The key
  is a server key (compared in constant time against all of them) or a live client secret
  (`client_secrets.py`). Without keys, anyone reaching the port is served; a client secret presented
  there still starts its conversations with its pinned session, and an expired one is still refused, so
  that a browser flow behaves the same against a development server.

Keys never reach the logs: a key is named by `key_id`, a short hash.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import structlog
from aiohttp import hdrs, web
from pydantic import Field, ValidationError

from aural.protocols.errors import ProtocolError
from aural.protocols.models import SessionConfig, WireModel

from .client_secrets import DEFAULT_SECONDS, MAX_SECONDS, MIN_SECONDS, PREFIX, ClientSecrets, SecretStoreFull

log = structlog.get_logger(__name__)

KEY_PROTOCOL = "openai-insecure-api-key."
GUARDED = frozenset({"/v1/realtime", "/v1/models", "/v1/realtime/client_secrets"})
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class Access:
    """The server's access policy (`create_app(access=...)`); the default is an open development server.

    Args:
        keys: the server keys; empty: no key is needed.
        secrets: the store of client secrets minted here (its clock is the one secrets expire by).
        allowed_origins: the browser origins allowed (`*`: any); None: loopback origins on a loopback
            server, else the same origin as the request's `Host`.
        max_sessions_per_key: concurrent conversations of one key, a client secret's counting toward the
            key that minted it; None: only the server's `max_sessions` bounds them.
    """

    keys: tuple[str, ...] = ()
    secrets: ClientSecrets = field(default_factory=ClientSecrets)
    allowed_origins: tuple[str, ...] | None = None
    max_sessions_per_key: int | None = None


@dataclass(frozen=True)
class Caller:
    """Who made a request that passed the guard.

    Args:
        key_id: the `key_id` of the server key used, or that minted the client secret used; None when the
            server has no keys.
        session: the session configuration a client secret pinned.
        by_secret: whether a client secret authenticated it (it may not mint more).
    """

    key_id: str | None = None
    session: SessionConfig | None = None
    by_secret: bool = False


def key_id(key: str) -> str:
    """A short, non-reversible name for a key, safe to log: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


class KeySlots:
    """The live conversations of each key, against `Access.max_sessions_per_key`."""

    def __init__(self, cap: int | None) -> None:
        self._cap = cap
        self._held: Counter[str] = Counter()

    def take(self, caller: Caller) -> bool:
        """Count one more conversation of the caller's key; False (counting nothing) when it is at its cap."""
        if caller.key_id is None or self._cap is None:
            return True
        if self._held[caller.key_id] >= self._cap:
            return False
        self._held[caller.key_id] += 1
        return True

    def give_back(self, caller: Caller) -> None:
        """A conversation that `take` counted has ended."""
        if caller.key_id is not None and self._cap is not None:
            self._held[caller.key_id] -= 1


ACCESS: web.AppKey[Access] = web.AppKey("access", Access)
CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)
PinSession = Callable[[SessionConfig | None], SessionConfig]
"""The configuration a conversation would start with, given a pinned one; raises ProtocolError when invalid."""
_PIN: web.AppKey[PinSession] = web.AppKey("pin_session")
_SLOTS: web.AppKey[KeySlots] = web.AppKey("key_slots", KeySlots)


def install_access(app: web.Application, access: Access, pin_session: PinSession) -> None:
    """Guard `app` with `access` and serve `POST /v1/realtime/client_secrets` on it."""
    app[ACCESS] = access
    app[_PIN] = pin_session
    app[_SLOTS] = KeySlots(access.max_sessions_per_key)
    app.middlewares.append(guard)
    app.router.add_post("/v1/realtime/client_secrets", create_client_secret)


def key_slots(app: web.Application) -> KeySlots:
    """The per-key session counts of an app guarded by `install_access`."""
    return app[_SLOTS]


def error_response(status: int, code: str, message: str, error_type: str = "invalid_request_error") -> web.Response:
    """An HTTP error with OpenAI's body: `{"error": {"type", "code", "message"}}`."""
    return web.json_response({"error": {"type": error_type, "code": code, "message": message}}, status=status)


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse a foreign origin (403) or a missing or wrong key (401); else note the `Caller` and go on."""
    if request.path not in GUARDED:
        return await handler(request)
    admitted = admit(request.app[ACCESS], request.path, request.headers, request.host, _on_loopback(request))
    if isinstance(admitted, Refusal):
        return error_response(admitted.status, admitted.code, admitted.message)
    request[CALLER] = admitted
    return await handler(request)


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused before any upgrade: its HTTP status, OpenAI-style code and message."""

    status: int
    code: str
    message: str


def admit(access: Access, path: str, headers: Mapping[str, str], host: str, on_loopback: bool) -> Caller | Refusal:
    """The caller a guarded request makes, or why it is refused: the whole check of `guard`, for any web framework.

    Args:
        access: the server's policy.
        path: the request's path (for the log).
        headers: the request's headers (case-insensitive lookup).
        host: its `Host` header.
        on_loopback: whether it reached a socket on a loopback address.
    """
    origin = headers.get(hdrs.ORIGIN)
    if origin is not None and not origin_allowed(origin, host, on_loopback, access.allowed_origins):
        log.info("refused", path=path, reason="origin not allowed", origin=origin)
        message = f"Origin '{origin}' is not allowed here (the server's --allowed-origins lists those it takes)."
        return Refusal(403, "origin_not_allowed", message)
    caller, problem = authenticate(access, credential(headers))
    if caller is None:
        log.info("refused", path=path, reason=problem)
        return Refusal(401, "invalid_api_key", problem)
    return caller


def credential(headers: Mapping[str, str]) -> str | None:
    """The key a request's headers present: its Bearer token, else its `openai-insecure-api-key.` subprotocol."""
    scheme, _, token = headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for offered in headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(","):
        if offered.strip().startswith(KEY_PROTOCOL):
            return offered.strip().removeprefix(KEY_PROTOCOL)
    return None


def authenticate(access: Access, presented: str | None) -> tuple[Caller | None, str]:
    """The caller that `presented` makes, or None and why it is refused (a sentence without the key)."""
    if access.keys and presented is not None:
        matched = None
        for key in access.keys:  # every key compared, in constant time: no timing tells which or how close
            if hmac.compare_digest(key.encode(), presented.encode()):
                matched = key
        if matched is not None:
            return Caller(key_id(matched)), ""
    if presented is not None and presented.startswith(PREFIX):
        grant = access.secrets.grant(presented)
        if grant is None:
            return None, "This client secret has expired or is unknown; create a new one."
        return Caller(grant.key_id, grant.session, by_secret=True), ""
    if not access.keys:
        return Caller(), ""
    if presented is None:
        return None, (
            "Missing API key: send 'Authorization: Bearer <key>' or, from a browser, the subprotocol "
            f"'{KEY_PROTOCOL}<key>'."
        )
    return None, "Incorrect API key provided."


def origin_allowed(origin: str, host: str, on_loopback: bool, allowed: tuple[str, ...] | None) -> bool:
    """Whether a browser page of `origin` may use a server reached at `host` (its `Host` header), on a loopback
    socket or not (see the module's docstring)."""
    if allowed is not None:
        return "*" in allowed or origin.rstrip("/").lower() in {entry.rstrip("/").lower() for entry in allowed}
    parts = urlsplit(origin.lower())
    if on_loopback:
        return parts.scheme in ("http", "https") and parts.hostname in _LOOPBACK_NAMES
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    served = urlsplit(f"//{host.lower()}")
    return parts.hostname is not None and (parts.hostname, port) == (
        served.hostname,
        served.port or _DEFAULT_PORTS.get(parts.scheme),
    )


def _on_loopback(request: web.Request) -> bool:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if not isinstance(sockname, tuple):
        return False
    try:
        return ipaddress.ip_address(sockname[0]).is_loopback
    except ValueError:
        return False


class ExpiresAfter(WireModel):
    anchor: Literal["created_at"] = "created_at"
    seconds: int = Field(default=DEFAULT_SECONDS, ge=MIN_SECONDS, le=MAX_SECONDS)


class ClientSecretRequest(WireModel):
    """The body of `POST /v1/realtime/client_secrets`, as OpenAI's."""

    session: SessionConfig | None = None
    expires_after: ExpiresAfter | None = None


async def create_client_secret(request: web.Request) -> web.Response:
    """`POST /v1/realtime/client_secrets`: a client secret for the caller's key, with a pinned session."""
    caller = request[CALLER]
    if caller.by_secret:
        return error_response(403, "invalid_api_key", "A client secret cannot create client secrets: use a server key.")
    try:
        body = ClientSecretRequest.model_validate_json(await request.text() or "{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return error_response(400, "invalid_value", f"{where}: {first['msg']}" if where else first["msg"])
    try:
        session = request.app[_PIN](body.session)
    except ProtocolError as exc:
        return error_response(400, exc.code, exc.message)
    seconds = body.expires_after.seconds if body.expires_after else DEFAULT_SECONDS
    try:
        value, grant = request.app[ACCESS].secrets.mint(caller.key_id, body.session, seconds)
    except SecretStoreFull as exc:
        return error_response(429, "rate_limit_exceeded", str(exc), "rate_limit_error")
    log.info("client secret created", key=caller.key_id, seconds=seconds)
    shown = session.model_dump(mode="json", exclude_none=True, exclude={"id"})
    return web.json_response({"value": value, "expires_at": int(grant.expires_at), "session": shown})
