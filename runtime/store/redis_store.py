"""A conversation store in Redis (`RedisStore`; `pip install 'aural[redis]'`), shared by every server that names it.

Three keys per conversation, under `prefix` + session id: `:meta`, a hash of the writer and the head; `:items`, a hash
of item records by item id; `:audio`, a hash of audio blobs by item id. A save is one transaction (a whole one
replaces the three keys); unless it is a takeover, it checks its writer under `WATCH` first, so that a conversation
another server took over meanwhile is left alone (`ConversationMoved`). Every save sets the keys to expire `ttl`
seconds later: a conversation whose server died without ending it is forgotten then, so `ttl` must outlast the
longest time a live conversation goes without a change (the default is six times the default idle timeout).
"""

from __future__ import annotations

from collections.abc import Mapping

from redis.asyncio import Redis
from redis.exceptions import WatchError
from redis.typing import EncodableT

from ..session.snapshot import Snapshot
from .base import Changes, ConversationMoved

TTL = 3600.0
PING_TIMEOUT = 5.0


class RedisStore:
    """Conversations in the Redis server at `url` (`redis://host:port/db`, `rediss://` for TLS, `unix://path`).

    Args:
        url: the server.
        ttl: seconds a stored conversation lives after its last save.
        prefix: the start of its keys.
    """

    def __init__(self, url: str, *, ttl: float = TTL, prefix: str = "aural:conversation:") -> None:
        self._redis = Redis.from_url(url)
        self._ttl_ms = int(ttl * 1000)
        self._prefix = prefix

    async def close(self) -> None:
        """Close the connections to the server."""
        await self._redis.aclose()

    def _keys(self, session_id: str) -> tuple[str, str, str]:
        key = self._prefix + session_id
        return f"{key}:meta", f"{key}:items", f"{key}:audio"

    async def save(self, session_id: str, changes: Changes) -> None:
        keys = meta, items, audio = self._keys(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            if not changes.takeover:
                await pipe.watch(meta)
                if await pipe.hget(meta, "writer") != changes.writer.encode():
                    raise ConversationMoved(f"another writer holds {session_id} than {changes.writer}")
            pipe.multi()  # type: ignore[no-untyped-call]
            if changes.whole:
                pipe.delete(*keys)
            elif changes.deleted:
                pipe.hdel(items, *changes.deleted)
                pipe.hdel(audio, *changes.deleted)
            pipe.hset(meta, mapping=_fields({"writer": changes.writer, "head": changes.head}))
            if changes.items:
                pipe.hset(items, mapping=_fields(changes.items))
            if changes.audio:
                pipe.hset(audio, mapping=_fields(changes.audio))
            for key in keys:
                pipe.pexpire(key, self._ttl_ms)
            try:
                await pipe.execute()
            except WatchError:
                raise ConversationMoved(f"another writer took {session_id} over during a save") from None

    async def load(self, session_id: str) -> Snapshot | None:
        meta, items, audio = self._keys(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(meta, "head")
            pipe.hgetall(items)
            pipe.hgetall(audio)
            head, records, blobs = await pipe.execute()
        if head is None:
            return None
        return Snapshot.from_records(
            head, {key.decode(): value for key, value in records.items()}, {key.decode(): v for key, v in blobs.items()}
        )

    async def delete(self, session_id: str, writer: str) -> None:
        keys = meta, _, _ = self._keys(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(meta)
            if await pipe.hget(meta, "writer") != writer.encode():
                return
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.delete(*keys)
            try:
                await pipe.execute()
            except WatchError:  # another writer took it over meanwhile: it is theirs
                return


async def ping(url: str) -> None:
    """Ask the Redis server at `url` for an answer, on a connection of its own.

    Raises:
        redis.exceptions.RedisError: no answer; ValueError: a URL redis-py cannot read.
    """
    client = Redis.from_url(url, socket_connect_timeout=PING_TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()


def _fields(values: Mapping[str, EncodableT]) -> dict[EncodableT, EncodableT]:
    """A hash's fields as redis-py types them."""
    return {key: value for key, value in values.items()}
