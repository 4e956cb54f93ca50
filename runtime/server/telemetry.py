"""One connection's responses timed and counted: the app's metrics, and one log line per response.

The driver shows it every input it hands the session (`received`: decoded audio is counted there) and every
server event it sends (`sent`). Timing the wire events rather than the engine's measures what the client
gets: time to first token runs from `response.created` to the first delta (text or call arguments), which
takes in a wait for the device, the prefill and the first decode step; the gaps between deltas are those the
client sees (a lagging client gets merged deltas, so fewer, longer gaps). `response.done` carries the status
and the token usage, the same figures a client's cost tracker reads.

The response's line, logged at `response.done`:

    {"event": "response done", "response": "resp_…", "status": "completed", "input_tokens": 412,
     "cached_tokens": 380, "output_tokens": 57, "ttft_ms": 81.2, "duration_ms": 1210.4,
     "session": "sess_…", "conversation": "conv_…", ...}
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aural.protocols import server_events as se
from aural.protocols.models import Response
from aural.protocols.server_events import ServerEventBase

from ..engine.base import SAMPLE_RATE
from ..session.inputs import AudioDecoded, AudioEnded, ClipsDecoded, Input
from .metrics import Metrics


@dataclass
class _Timing:
    """One running response's clock readings."""

    created: float
    first_delta: float | None = None
    last_delta: float | None = None


class ConnectionTelemetry:
    """Feeds the app's metrics from one connection and logs a line per response.

    Args:
        metrics: the app's instruments.
        logger: the connection's logger.
        clock: seconds, monotonic.
    """

    def __init__(self, metrics: Metrics, logger: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._log = logger
        self._clock = clock
        self._running: dict[str, _Timing] = {}

    def received(self, received: Input) -> None:
        """An input the session is handed: decoded input audio counts towards the audio seconds."""
        match received:
            case AudioDecoded(samples) | AudioEnded(samples):
                self._metrics.audio_seconds.inc(samples.size / SAMPLE_RATE)
            case ClipsDecoded(clips):
                decoded = sum(clip.size for clip in clips.values() if not isinstance(clip, Exception))
                self._metrics.audio_seconds.inc(decoded / SAMPLE_RATE)
            case _:
                pass

    def sent(self, event: ServerEventBase) -> None:
        """A server event went out."""
        match event:
            case se.ResponseCreated(response=response):
                self._running[response.id] = _Timing(self._clock())
            case (
                se.ResponseOutputTextDelta(response_id=response_id)
                | se.ResponseFunctionCallArgumentsDelta(response_id=response_id)
            ):
                self._delta(response_id)
            case se.ResponseDone(response=response):
                self._done(response)
            case se.Error(error=error):
                self._metrics.errors.labels(error.code or error.type).inc()
            case _:
                pass

    def _delta(self, response_id: str) -> None:
        timing = self._running.get(response_id)
        if timing is None:
            return
        now = self._clock()
        if timing.last_delta is None:
            timing.first_delta = now
            self._metrics.ttft.observe(now - timing.created)
        else:
            self._metrics.inter_token.observe(now - timing.last_delta)
        timing.last_delta = now

    def _done(self, response: Response) -> None:
        timing = self._running.pop(response.id, None)
        now = self._clock()
        usage = response.usage
        metrics = self._metrics
        metrics.responses.labels(response.status).inc()
        fields: dict[str, Any] = {"response": response.id, "status": response.status}
        if usage is not None:
            cached = usage.input_token_details.cached_tokens
            metrics.input_tokens.inc(usage.input_tokens)
            metrics.cached_tokens.inc(cached)
            metrics.output_tokens.inc(usage.output_tokens)
            fields |= {
                "input_tokens": usage.input_tokens,
                "cached_tokens": cached,
                "output_tokens": usage.output_tokens,
            }
        if timing is not None:
            metrics.duration.observe(now - timing.created)
            fields["duration_ms"] = round((now - timing.created) * 1000, 1)
            if timing.first_delta is not None:
                fields["ttft_ms"] = round((timing.first_delta - timing.created) * 1000, 1)
        self._log.info("response done", **fields)
