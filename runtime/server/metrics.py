"""Prometheus metrics of one app, served at `GET /metrics` in the text exposition format.

Each app has its own `CollectorRegistry` (tests build many apps in one process; the global registry would
refuse the second). Counters and histograms move as connections work (`telemetry.ConnectionTelemetry`
feeds them from the events each connection sends); what is a state rather than an event (live
conversations, draining, the engine's KV pool and device memory) is read at scrape time, so that a
scrape never sees a stale figure.

    aural_conversations_active                 live websocket conversations
    aural_draining                             1 while the server drains for shutdown
    aural_responses_total{status}              responses ended: completed, incomplete, cancelled, failed
    aural_response_ttft_seconds                response.created → its first delta (text or call arguments)
    aural_response_inter_token_seconds         between two deltas of a response, as sent
    aural_response_duration_seconds            response.created → response.done
    aural_input_tokens_total                   prompt tokens of ended responses (cached ones included)
    aural_cached_input_tokens_total            of which the engine found already computed
    aural_output_tokens_total                  generated tokens
    aural_input_audio_seconds_total            input audio decoded (16 kHz samples / 16000)
    aural_errors_total{code}                   `error` events sent, by `error.code`
    aural_kv_pool_bytes{state}                 the engine's KV pool: used, total (engines with a pool)
    aural_device_memory_bytes{kind}            accelerator memory: allocated, reserved, total (on a GPU)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..engine.base import Engine

TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
INTER_TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The app's instruments, and the registry `/metrics` renders.

    Args:
        engine: the served engine, asked for its KV pool and device memory at each scrape.
        conversations: the number of live conversations, asked at each scrape.
        draining: whether the server drains, asked at each scrape.
    """

    def __init__(self, engine: Engine, conversations: Callable[[], int], draining: Callable[[], bool]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.responses = Counter("aural_responses", "Responses ended, by status.", ["status"], registry=registry)
        self.ttft = Histogram(
            "aural_response_ttft_seconds",
            "From response.created to the response's first delta.",
            buckets=TTFT_BUCKETS,
            registry=registry,
        )
        self.inter_token = Histogram(
            "aural_response_inter_token_seconds",
            "Between two deltas of a response, as sent (a lagging client gets merged deltas).",
            buckets=INTER_TOKEN_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "aural_response_duration_seconds",
            "From response.created to response.done.",
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.input_tokens = Counter("aural_input_tokens", "Prompt tokens of ended responses.", registry=registry)
        self.cached_tokens = Counter(
            "aural_cached_input_tokens", "Prompt tokens found already computed in the cache.", registry=registry
        )
        self.output_tokens = Counter("aural_output_tokens", "Generated tokens.", registry=registry)
        self.audio_seconds = Counter("aural_input_audio_seconds", "Input audio decoded, in seconds.", registry=registry)
        self.errors = Counter("aural_errors", "Error events sent, by code.", ["code"], registry=registry)
        registry.register(_Live(engine, conversations, draining))

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class _Live(Collector):
    """What is a state, not an event: read when scraped."""

    def __init__(self, engine: Engine, conversations: Callable[[], int], draining: Callable[[], bool]) -> None:
        self._engine = engine
        self._conversations = conversations
        self._draining = draining

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("aural_conversations_active", "Live conversations.", value=self._conversations())
        yield GaugeMetricFamily("aural_draining", "1 while the server drains for shutdown.", value=self._draining())
        stats = self._engine.stats()
        if stats is not None:
            pool = GaugeMetricFamily("aural_kv_pool_bytes", "The engine's KV pool, in bytes.", labels=["state"])
            pool.add_metric(["used"], stats.blocks_used * stats.bytes_per_block)
            pool.add_metric(["total"], stats.blocks_total * stats.bytes_per_block)
            yield pool
        memory = self._engine.device_memory()
        if memory is not None:
            device = GaugeMetricFamily("aural_device_memory_bytes", "The accelerator's memory.", labels=["kind"])
            device.add_metric(["allocated"], memory.allocated)
            device.add_metric(["reserved"], memory.reserved)
            device.add_metric(["total"], memory.total)
            yield device


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


async def serve_metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: the scrape."""
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
