"""Client secrets: short-lived keys that a backend mints with its server key and hands to a browser.

OpenAI's ephemeral keys, same shape: `POST /v1/realtime/client_secrets` returns `{"value": "ek_…",
"expires_at": <epoch s>, "session": {…}}`; the value opens conversations (as a Bearer key or in the
`openai-insecure-api-key.` subprotocol) until it expires, each starting with the session configuration pinned
when it was minted. A conversation opened before the expiry runs on after it.

The store lives in memory: a server restart forgets every secret (they live minutes). It is bounded
(`max_live`), expired secrets are pruned as new ones are minted, and it keeps only a digest of each value,
so that neither a memory dump nor a lookup's timing gives a live secret away.
"""

from __future__ import annotations

import hashlib
import heapq
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aural.protocols.models import SessionConfig

PREFIX = "ek_"
"""What every client secret starts with (OpenAI's own prefix), so that an expired one is told from a wrong key."""
DEFAULT_SECONDS = 600
MIN_SECONDS = 10
MAX_SECONDS = 7200
MAX_LIVE = 10_000


@dataclass(frozen=True)
class Grant:
    """What a live client secret allows.

    Args:
        key_id: the id of the server key that minted it (None when the server has no keys), whose
            per-key session cap its conversations count toward.
        session: the configuration its conversations start with (None: the defaults).
        expires_at: when it stops opening conversations, in seconds since the epoch.
    """

    key_id: str | None
    session: SessionConfig | None
    expires_at: float


class SecretStoreFull(Exception):
    """`max_live` secrets are alive: no more until some expire."""


class ClientSecrets:
    """The live client secrets of one server.

    Args:
        clock: seconds since the epoch; tests pass their own to expire a secret without sleeping.
        max_live: secrets alive at once; minting one more raises `SecretStoreFull`.
    """

    def __init__(self, clock: Callable[[], float] = time.time, max_live: int = MAX_LIVE) -> None:
        self.clock = clock
        self._max_live = max_live
        self._grants: dict[bytes, Grant] = {}
        self._expiries: list[tuple[float, bytes]] = []  # a heap: the next to expire first

    def __len__(self) -> int:
        self._prune()
        return len(self._grants)

    def mint(
        self, key_id: str | None, session: SessionConfig | None, seconds: int = DEFAULT_SECONDS
    ) -> tuple[str, Grant]:
        """A new secret valid for `seconds`; returns its value (shown once, never stored) and its grant.

        Raises:
            SecretStoreFull: `max_live` secrets are alive.
        """
        self._prune()
        if len(self._grants) >= self._max_live:
            raise SecretStoreFull(f"{self._max_live} client secrets are alive; try again once some expire.")
        value = PREFIX + secrets.token_urlsafe(32)
        grant = Grant(key_id, session, self.clock() + seconds)
        digest = _digest(value)
        self._grants[digest] = grant
        heapq.heappush(self._expiries, (grant.expires_at, digest))
        return value, grant

    def grant(self, value: str) -> Grant | None:
        """What the secret `value` allows now; None for a secret expired or never minted here."""
        self._prune()
        return self._grants.get(_digest(value))

    def _prune(self) -> None:
        now = self.clock()
        while self._expiries and self._expiries[0][0] <= now:
            _, digest = heapq.heappop(self._expiries)
            self._grants.pop(digest, None)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()
