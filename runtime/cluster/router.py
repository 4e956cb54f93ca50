"""Serve's request router for the engine deployment: every call of a conversation goes where its cache lives.

The replicas' calls take the conversation id as their first argument (`replica.py`). The first call of a
conversation picks its home: the replica with the most free KV blocks, as the replicas last reported them
(`record_routing_stats`, every `STATS_PERIOD` seconds), less a reserve for each conversation placed there since
that report, so that a burst of new conversations spreads instead of piling onto the replica that looked emptiest;
fewer conversations break ties. Later calls go home (and wait there while it is busy: the cache is there). A home
that is no longer a candidate (its replica died or is draining) is replaced as a new conversation's would be: the
call carries what rebuilds the cache there.

Model multiplexing (`serve.multiplexed`) was the other way to key routing by conversation: it routes to a
replica holding the model id but falls back to any replica after a timeout, and picks new ids by fewest models,
not by free memory; this router states the policy exactly.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

STATS_PERIOD = 1.0
"""Seconds between two routing reports of a replica."""
RESERVE_BLOCKS = 32
"""KV blocks counted against a replica for each new conversation placed there since its last report."""
KEYED = frozenset({"generate", "prefill", "cancel", "close"})
"""The replica's methods whose first argument is a conversation id."""


class ConversationRouter(RequestRouter):
    """Affinity by conversation id; new conversations to the replica with the most free KV."""

    def initialize_state(self, reserve_blocks: int = RESERVE_BLOCKS, **kwargs: Any) -> None:
        self._reserve = reserve_blocks
        self._homes: dict[str, ReplicaID] = {}
        self._placed: defaultdict[ReplicaID, list[float]] = defaultdict(list)

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        conversation = _conversation(pending_request)
        if pending_request is not None:  # a choice that no replica takes is tried again after a backoff, not at once
            pending_request.routing_context.should_backoff = True
        if conversation is None or not candidate_replicas:
            return [candidate_replicas]
        assert pending_request is not None
        closing = pending_request.metadata.call_method == "close"
        home = self._homes.pop(conversation, None) if closing else self._homes.get(conversation)
        for replica in candidate_replicas:
            if replica.replica_id == home:
                return [[replica]]
        if closing:  # its home is gone, and with it what there was to free
            return [candidate_replicas]
        chosen = max(candidate_replicas, key=self._room)
        self._homes[conversation] = chosen.replica_id
        self._placed[chosen.replica_id].append(time.time())
        return [[chosen]]

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self._placed.pop(replica_id, None)

    def _room(self, replica: RunningReplica) -> tuple[float, float]:
        """Free KV blocks less the reserve of the conversations placed since the report; then fewer conversations."""
        stats = replica.routing_stats or {}
        reported = float(stats.get("time", 0.0))
        placed = self._placed[replica.replica_id]
        placed[:] = [at for at in placed if at > reported]
        free = float(stats.get("blocks_free", 0)) - self._reserve * len(placed)
        return free, -(float(stats.get("conversations", 0)) + len(placed))


def _conversation(request: PendingRequest | None) -> str | None:
    if request is None or request.metadata.call_method not in KEYED or not request.args:
        return None
    conversation = request.args[0]
    return conversation if isinstance(conversation, str) else None
