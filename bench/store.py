"""What saving a conversation to a store costs: a 10-turn spoken conversation (each turn 3 s of audio committed
and a reply of about 60 words), saved after every change as the server's driver saves it, into the in-memory store
and into Redis (a `redis-server` of its own on a Unix socket, or `--redis URL`). Per save: the bytes written and
the time to compute the changes (on the event loop) and to apply them; against it, what rewriting the whole
snapshot at every save would write; then one load and restore. Writes `bench/results/store.json`.

    python -m bench.store [--turns 10] [--seconds 3] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from aural.runtime.engine.base import GenerationDone
from aural.runtime.session.commands import StartResponse
from aural.runtime.session.session import ConversationSession
from aural.runtime.session.snapshot import Snapshot
from aural.runtime.store import ConversationStore, MemoryStore
from aural.runtime.store.redis_store import RedisStore
from aural.runtime.store.tracker import ChangeTracker
from tests.support.conversations import pcm16
from tests.support.fake_engine import CAPABILITIES
from tests.support.redis import redis_server
from tests.support.session import generated, of, send

REPLY = "The weather in Oslo is clear today, with a light wind from the west and about twelve degrees. " * 3


async def measure(store: ConversationStore, turns: int, seconds: float) -> dict[str, Any]:
    session = ConversationSession("tiny", CAPABILITIES)
    tracker = ChangeTracker(session, None)
    saves: list[dict[str, float]] = []
    idle: list[float] = []  # the changes of an input that changed nothing durable (a delta): none
    whole_bytes = 0

    async def save() -> None:
        nonlocal whole_bytes
        started = time.perf_counter()
        changes = tracker.changes(None)
        computed = time.perf_counter()
        if changes is None:
            idle.append(1e3 * (computed - started))
            return
        await store.save(session.id, changes)
        done = time.perf_counter()
        timing = {"changes_ms": 1e3 * (computed - started), "save_ms": 1e3 * (done - computed)}
        saves.append({"bytes": changes.size, **timing})
        whole_bytes += len(Snapshot.of(session, None).to_bytes())

    await save()
    for turn in range(turns):
        for event in (
            {"type": "input_audio_buffer.append", "audio": pcm16(seconds, 200 + 10 * turn)},
            {"type": "input_audio_buffer.commit"},
        ):
            send(session, **event)
            await save()
        (start,) = of(send(session, type="response.create"), StartResponse)
        for word in REPLY.split(" "):
            generated(session, start.response_id, word + " ")
            await save()  # the driver wakes its saver after every input; nothing durable changes mid-response
        generated(session, start.response_id, GenerationDone("stop"))
        await save()
    started = time.perf_counter()
    loaded = await store.load(session.id)
    restored = ConversationSession("tiny", CAPABILITIES, restored=loaded)
    load_ms = 1e3 * (time.perf_counter() - started)
    assert len(restored.items) == 2 * turns
    first, *later = saves
    return {
        "saves": len(saves),
        "bytes_written": int(sum(s["bytes"] for s in saves)),
        "bytes_if_whole_every_save": whole_bytes,
        "snapshot_bytes": len(Snapshot.of(session, None).to_bytes()),
        "first_save (whole, empty)": first,
        "turn_commit (audio)": _median([s for s in later if s["bytes"] > 64 * 1024]),
        "response_end (text)": _median([s for s in later if s["bytes"] <= 64 * 1024]),
        "no_change_check_ms_median": round(statistics.median(idle), 4),
        "load_and_restore_ms": round(load_ms, 3),
    }


def _median(saves: list[dict[str, float]]) -> dict[str, float]:
    """The saves' count and their median bytes and times."""
    keys = ("bytes", "changes_ms", "save_ms")
    medians = {f"{key}_median": round(statistics.median(s[key] for s in saves), 3) for key in keys}
    return {"count": len(saves), **medians}


async def run(args: argparse.Namespace, redis_url: str) -> dict[str, Any]:
    redis = RedisStore(redis_url, prefix="bench:")
    try:
        results = {
            "memory": await measure(MemoryStore(), args.turns, args.seconds),
            "redis": await measure(redis, args.turns, args.seconds),
        }
    finally:
        await redis.close()
    return {"turns": args.turns, "seconds_of_audio_per_turn": args.seconds, **results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--redis", metavar="URL", help="a Redis server to use (default: one of its own)")
    args = parser.parse_args()
    if args.redis:
        report = asyncio.run(run(args, args.redis))
    else:
        with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as url:
            report = asyncio.run(run(args, url))
    out = Path(__file__).parent / "results" / "store.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
