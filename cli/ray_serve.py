"""`aural serve --ray`: the runtime as a Ray Serve application (`aural.runtime.cluster`).

It starts a local Ray cluster, or joins one (`--ray-address auto`: the cluster this machine belongs to), starts
Serve's proxy on `--host:--port`, deploys the ingress and `--replicas` engine replicas (autoscaled up to
`--max-replicas` on their conversations) and waits for SIGTERM or SIGINT; then it deletes the application
(each replica drains: running responses and replies get `--drain-timeout` seconds) and leaves the cluster.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

import structlog

from aural.protocols.limits import Limits
from aural.runtime.server.access import Access
from aural.runtime.server.timeouts import Timeouts
from aural.runtime.tools import ToolRunner

from .checks import fail

log = structlog.get_logger(__name__)

RAY_EXTRA = "pip install 'aural[ray]'"
APPLICATION = "aural"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `aural serve --ray`."""
    group = parser.add_argument_group("Ray Serve (--ray)")
    group.add_argument(
        "--ray", action="store_true", help=f"serve on Ray Serve, one engine replica per accelerator ({RAY_EXTRA})"
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="the Ray cluster to join (auto: this machine's); default: start a local one",
    )
    group.add_argument(
        "--replicas", type=_at_least_one, default=1, metavar="N", help="engine replicas (the minimum when autoscaling)"
    )
    group.add_argument(
        "--max-replicas",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="autoscale the engine replicas up to N on the conversations they hold",
    )
    group.add_argument(
        "--target-conversations",
        type=_at_least_one,
        default=32,
        metavar="N",
        help="conversations per engine replica the autoscaler aims at",
    )
    group.add_argument(
        "--gpus-per-replica",
        type=float,
        default=None,
        metavar="N",
        help="accelerators per engine replica (default: 1 with --device cuda, else 0)",
    )
    group.add_argument("--ingress-replicas", type=_at_least_one, default=1, metavar="N", help="ingress replicas")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is below 1")
    return value


def serve_ray(args: argparse.Namespace, access: Access, tools: ToolRunner, limits: Limits, timeouts: Timeouts) -> None:
    """Run the Serve application of parsed `aural serve --ray` options until SIGTERM or SIGINT."""
    if args.max_replicas is not None and args.max_replicas < args.replicas:
        fail(f"--max-replicas {args.max_replicas} is below --replicas {args.replicas}")
    try:
        import ray
        from ray import serve

        from aural.runtime.cluster.deploy import ClusterSettings, application, local_cluster_env
        from aural.runtime.cluster.ingress import IngressSettings
        from aural.runtime.cluster.replica import EngineLoader
    except ImportError as exc:
        fail(f"--ray needs Ray Serve ({exc.name or exc}): {RAY_EXTRA}")
    gpus = args.gpus_per_replica if args.gpus_per_replica is not None else float(args.device == "cuda")
    options = {
        "device": args.device,
        "dtype": args.dtype,
        "kv_budget": args.kv_budget,
        "on_full": args.on_full,
        "idle_offload": args.idle_offload,
        "prefill_chunk": args.prefill_chunk,
        "cuda_graphs": not args.no_cuda_graphs,
    }
    settings = ClusterSettings(
        loader=EngineLoader(args.model, options),
        ingress=IngressSettings(
            model_names=tuple(args.alias),
            max_sessions=args.max_sessions,
            keys=access.keys,
            allowed_origins=access.allowed_origins,
            max_sessions_per_key=access.max_sessions_per_key,
            server_tools=tools if tools.definitions else None,
            limits=limits,
            timeouts=timeouts,
            drain_timeout=args.drain_timeout,
            store_url=args.store,
        ),
        replicas=args.replicas,
        max_replicas=args.max_replicas,
        target_conversations=args.target_conversations,
        gpus_per_replica=gpus,
        ingress_replicas=args.ingress_replicas,
    )
    # A local cluster's workers import `--tools` modules from here, as `aural serve` does.
    runtime_env = None if args.ray_address else {"env_vars": {"PYTHONPATH": os.getcwd()}}
    if not args.ray_address:
        local_cluster_env()
    ray.init(address=args.ray_address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        http = {"host": args.host, "port": args.port}
        if args.tls_cert:
            http |= {"ssl_certfile": args.tls_cert, "ssl_keyfile": args.tls_key or args.tls_cert}
        serve.start(http_options=http)
        serve.run(application(settings), name=APPLICATION, route_prefix="/")
        scheme = "wss" if args.tls_cert else "ws"
        log.info(
            "serving",
            url=f"{scheme}://{args.host}:{args.port}/v1/realtime",
            model=args.model,
            replicas=args.replicas,
            max_replicas=args.max_replicas,
        )
        stop.wait()
        log.info("draining")
        serve.delete(APPLICATION)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
