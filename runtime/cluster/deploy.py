"""The Serve application: an ingress deployment in front of an engine deployment.

`aural serve --ray` builds it from its options (`cli/ray_serve.py`); a Serve config file names the builder:

    applications:
      - name: aural
        route_prefix: /
        import_path: aural.runtime.cluster.deploy:build
        args: {model: Qwen/Qwen2-Audio-7B-Instruct, replicas: 2, max_replicas: 8, gpus_per_replica: 1}

Engine replicas take one accelerator each (`gpus_per_replica`; 0 runs them on CPUs, as the tests do), route by
conversation (`router.py`) and, with `max_replicas`, scale on the conversations they hold (`scaling.py`). A
replica that Serve stops (scaled down, redeployed) finishes its running replies first
(`graceful_shutdown_timeout_s`); its conversations' next turns rebuild their caches elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ray import serve
from ray.actor import ActorHandle
from ray.serve.config import AutoscalingConfig, AutoscalingPolicy, RequestRouterConfig
from ray.serve.deployment import Application

from .fleet import FleetBoard, board
from .ingress import Ingress, IngressSettings, api
from .replica import IDLE_CLOSE, EngineLoader, EngineReplica
from .router import STATS_PERIOD, ConversationRouter
from .scaling import ConversationScaling

ENGINE_REQUESTS = 4096
"""Calls one engine replica takes at once: its scheduler batches them, so Serve should not hold them back."""
ROUTER_ENV = {"RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "1.0"}
"""The ingress' router asks a replica for its queue length before each call and, by default, gives up after 0.1 s and
backs off: a replica whose host is busy (a model decoding on every core) then delays turns for seconds. Ours never
fill their queue (`ENGINE_REQUESTS`), so a slow answer costs nothing."""
CONTROLLER_ENV = {"RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60"}
"""Serve's controller kills a proxy that is not ready 5 s after it was asked to start, and `serve.start` then fails:
on a busy small machine a fresh worker takes longer. The controller reads this from the environment a local cluster
starts with: `local_cluster_env()` sets it, unless already set, before `ray.init` starts one."""


def local_cluster_env() -> None:
    """Put `CONTROLLER_ENV` in this process' environment (what a local cluster's processes inherit), keeping values
    already set."""
    for name, value in CONTROLLER_ENV.items():
        os.environ.setdefault(name, value)


@dataclass(frozen=True)
class ClusterSettings:
    """The application's shape.

    Args:
        loader: each engine replica's model and engine options.
        ingress: the ingress' server settings.
        replicas: engine replicas (the minimum, when autoscaling).
        max_replicas: autoscale between `replicas` and this on conversations held (None: fixed).
        target_conversations: conversations per replica the autoscaler aims at.
        gpus_per_replica: accelerators per engine replica (0: CPU).
        cpus_per_replica: CPUs Ray reserves per engine replica.
        ingress_replicas: ingress replicas (Serve's proxy spreads new websockets over them).
        idle_close: seconds without a call after which an engine replica closes a conversation's session.
    """

    loader: EngineLoader = field(default_factory=EngineLoader)
    ingress: IngressSettings = field(default_factory=IngressSettings)
    replicas: int = 1
    max_replicas: int | None = None
    target_conversations: int = 32
    gpus_per_replica: float = 0.0
    cpus_per_replica: float = 1.0
    ingress_replicas: int = 1
    idle_close: float = IDLE_CLOSE


class EngineDeployment(EngineReplica):
    """An engine replica that posts its report to the fleet board at each of Serve's routing-stats calls."""

    _board: ActorHandle[FleetBoard] | None = None

    def record_routing_stats(self) -> dict[str, Any]:
        if self._board is None:  # looked up once: a lookup is a blocking call to Ray's control store
            self._board = board()
        self._board.post.remote(self.report())
        return super().record_routing_stats()

    async def __del__(self) -> None:  # Serve awaits it when it stops the replica
        if self._board is not None:
            self._board.withdraw.remote(self.report().replica)
        await self.shutdown()


class IngressDeployment(Ingress):
    """An ingress that drains its conversations when Serve stops it."""

    async def __del__(self) -> None:
        await self.drain(self._settings.drain_timeout)


def application(settings: ClusterSettings) -> Application:
    """The Serve application of `settings`, ready for `serve.run`."""
    scaling: dict[str, Any]
    if settings.max_replicas is not None:
        policy = AutoscalingPolicy(  # type: ignore[no-untyped-call]
            policy_function=ConversationScaling, policy_kwargs={"target": settings.target_conversations}
        )
        scaling = {
            "autoscaling_config": AutoscalingConfig(
                min_replicas=settings.replicas, max_replicas=settings.max_replicas, policy=policy
            )
        }
    else:
        scaling = {"num_replicas": settings.replicas}
    router = RequestRouterConfig.model_validate(
        {"request_router_class": ConversationRouter, "request_routing_stats_period_s": STATS_PERIOD}
    )
    engine = serve.deployment(
        name="AuralEngine",
        max_ongoing_requests=ENGINE_REQUESTS,
        ray_actor_options={"num_gpus": settings.gpus_per_replica, "num_cpus": settings.cpus_per_replica},
        request_router_config=router,
        graceful_shutdown_timeout_s=settings.ingress.drain_timeout + 5,
        **scaling,
    )(EngineDeployment)
    ingress = serve.deployment(
        name="AuralIngress",
        num_replicas=settings.ingress_replicas,
        max_ongoing_requests=settings.ingress.max_sessions + 64,  # a websocket is a request for its whole life
        ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": ROUTER_ENV}},
        graceful_shutdown_timeout_s=settings.ingress.drain_timeout + 5,
    )(serve.ingress(api)(IngressDeployment))
    return ingress.bind(engine.bind(settings.loader, settings.idle_close), settings.ingress)


def build(args: Mapping[str, Any]) -> Application:
    """The application builder of a Serve config file (`import_path: aural.runtime.cluster.deploy:build`).

    `args`: `model` and the engine's load options (`device`, `dtype`, `kv_budget` in bytes, `on_full`,
    `idle_offload`, `prefill_chunk`), `ClusterSettings`' numbers (`replicas`, `max_replicas`,
    `target_conversations`, `gpus_per_replica`, `cpus_per_replica`, `ingress_replicas`), and the ingress'
    `max_sessions`, `keys` (a list) and `model_names` (a list).
    """
    args = dict(args)
    engine_keys = ("device", "dtype", "kv_budget", "on_full", "idle_offload", "prefill_chunk")
    loader = EngineLoader(str(args.pop("model", "tiny")), {key: args.pop(key) for key in engine_keys if key in args})
    ingress = IngressSettings(
        model_names=tuple(args.pop("model_names", ())),
        max_sessions=int(args.pop("max_sessions", 64)),
        keys=tuple(args.pop("keys", ())),
    )
    numbers = {
        "replicas": int,
        "max_replicas": int,
        "target_conversations": int,
        "gpus_per_replica": float,
        "cpus_per_replica": float,
        "ingress_replicas": int,
    }
    shape = {key: kind(args.pop(key)) for key, kind in numbers.items() if key in args}
    if args:
        raise ValueError(f"unknown Aural application arguments: {', '.join(sorted(args))}")
    return application(ClusterSettings(loader, ingress, **shape))
