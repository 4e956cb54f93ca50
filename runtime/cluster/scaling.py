"""Autoscaling the engine deployment on its conversations, not on requests in flight.

A conversation holds its replica's KV between turns, when no request runs: Serve's default policy (ongoing
requests) would see an idle fleet full of conversations. Each replica reports the conversations it holds
(`record_autoscaling_stats`); this policy asks for `ceil(conversations / target)` replicas. Serve applies the
deployment's `min_replicas`, `max_replicas` and up/down delays around it. Serve ships the policy to its
controller by value, module and all: it imports nothing of Aural.
"""

from __future__ import annotations

import math
from typing import Any


class ConversationScaling:
    """Serve's custom autoscaling policy (`AutoscalingPolicy(policy_function=ConversationScaling,
    policy_kwargs={"target": n})`).

    Args:
        target: conversations one replica should hold.
    """

    def __init__(self, target: int = 32) -> None:
        if target < 1:
            raise ValueError("target must be at least 1 conversation per replica")
        self.target = target

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        """The replicas wanted for the conversations the replicas last reported (Serve's `AutoscalingContext`)."""
        held = (ctx.aggregated_metrics or {}).get("conversations", {})
        conversations = sum(held.values())
        return max(1, math.ceil(conversations / self.target)), {"conversations": conversations}
