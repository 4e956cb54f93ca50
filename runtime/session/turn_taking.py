"""Server VAD for one session: where the user's turns lie in the input audio stream, and what they ask for.

The driver runs the voice activity model over every decoded sample (a "detection stream"; a new one
starts whenever detection is switched on or reconfigured) and reports one speech probability per
512-sample window. `TurnTaking.hear` turns them, through the `TurnDetector`, into intents placed at
absolute positions of the session's stream, which the router acts on: speech began (and may interrupt
the response), read the turn ahead (each completed audio clip while the user talks, the whole turn when
silence begins), stop that read-ahead (speech went on: what it reads is stale), the turn ended (commit
it, and answer it), the idle timeout fired, older audio can go.
It remembers the turn in progress: the item id it will become (announced in `speech_started`), where its
committed audio begins (onset minus `prefix_padding_ms`) and how many of its clips were already read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aural.protocols.models import ServerVad
from aural.protocols.server_events import new_id

from ..engine.base import SAMPLE_RATE
from .input_audio import MIN_AUDIO
from .turn_detector import SpeechEnding, SpeechResumed, SpeechStarted, SpeechStopped, TurnDetector

DEFAULTS = ServerVad(
    threshold=0.5,
    prefix_padding_ms=300,
    silence_duration_ms=500,
    create_response=True,
    interrupt_response=True,
    idle_timeout_ms=None,
)
PER_MS = SAMPLE_RATE // 1000


def with_defaults(settings: ServerVad) -> ServerVad:
    """`settings` with OpenAI's defaults for every field left out."""
    given = settings.model_dump(exclude_none=True)
    return DEFAULTS.model_copy(update=given)


@dataclass(frozen=True)
class SpeechBegan:
    """The user started talking: turn `item_id`'s audio starts at `start`; `interrupt` the response and the
    server tools when the settings say so."""

    item_id: str
    start: int
    interrupt: bool


@dataclass(frozen=True)
class ReadAhead:
    """The turn so far (`start` to `end`) may be read by the model before it ends."""

    item_id: str
    start: int
    end: int


@dataclass(frozen=True)
class ReadAheadStale:
    """Speech went on after a pause of the turn in progress: the read-ahead of the turn up to the pause is of
    audio that will not be the turn's (the clip grows), so it should stop."""


@dataclass(frozen=True)
class SpeechEnded:
    """The silence lasted: turn `item_id` is the audio from `start` to `end`; `respond` to it when committed."""

    item_id: str
    start: int
    end: int
    respond: bool


@dataclass(frozen=True)
class IdleTimedOut:
    """No speech for `idle_timeout_ms` after a response: commit what the buffer holds up to `end` as turn
    `item_id` and answer it."""

    item_id: str
    end: int


@dataclass(frozen=True)
class Forget:
    """Audio before `position` can belong to no turn any more."""

    position: int


TurnIntent = SpeechBegan | ReadAhead | ReadAheadStale | SpeechEnded | IdleTimedOut | Forget


class TurnTaking:
    """The state of server VAD in one session.

    Args:
        settings: the session's `server_vad` settings, defaults filled in.
        stream: the detection stream's number.
        position: the sample position of the detection stream's first sample.
        clip_samples: the audio the model reads as one piece: each completed one is read ahead.
    """

    def __init__(self, settings: ServerVad, stream: int, position: int, clip_samples: int) -> None:
        self.settings = settings
        self.stream = stream
        self._clip_samples = clip_samples
        self._origin = position
        self._windows = 0
        self._detector_origin = position
        self._detector = self._new_detector()
        self.item_id: str | None = None
        self.start: int | None = None  # where the turn's committed audio begins, while speech goes on
        self.clips = 0  # completed clips of the turn already read ahead
        self.idle_from: int | None = None  # where the idle timer started (after a response)

    @property
    def position(self) -> int:
        """The sample position up to which detection has run."""
        return self._origin + self._windows * TurnDetector.WINDOW_SAMPLES

    @property
    def padding(self) -> int:
        assert self.settings.prefix_padding_ms is not None
        return self.settings.prefix_padding_ms * PER_MS

    def hear(self, probabilities: Sequence[float], *, buffer_start: int, responding: bool) -> list[TurnIntent]:
        """The next windows' speech probabilities → what they ask for, in order.

        Args:
            buffer_start: the first position the input buffer still holds (a turn cannot start before it).
            responding: a response runs (the idle timer waits for its end).
        """
        intents: list[TurnIntent] = []
        for event in self._detector.push(probabilities):
            if isinstance(event, SpeechStarted):
                start = max(buffer_start, self._at(event.start_ms) - self.padding)
                self.item_id, self.start, self.clips, self.idle_from = new_id("item"), start, 0, None
                intents.append(SpeechBegan(self.item_id, start, bool(self.settings.interrupt_response)))
            elif isinstance(event, SpeechEnding) and self.item_id is not None and self.start is not None:
                intents.append(ReadAhead(self.item_id, self.start, self._at(event.end_ms)))
            elif isinstance(event, SpeechResumed) and self.item_id is not None:
                intents.append(ReadAheadStale())
            elif isinstance(event, SpeechStopped) and self.item_id is not None and self.start is not None:
                end = self._at(event.end_ms)
                intents.append(SpeechEnded(self.item_id, self.start, end, self._respond))
                self.end()
                buffer_start = max(buffer_start, end)  # the router takes the turn out of the buffer
        self._windows += len(probabilities)
        if self.item_id is not None and self.start is not None:
            complete = (self.position - self.start) // self._clip_samples
            if complete > self.clips:
                self.clips = complete
                intents.append(ReadAhead(self.item_id, self.start, self.start + complete * self._clip_samples))
            return intents
        if self._idle_for(responding):
            self.idle_from = None
            intents.append(IdleTimedOut(new_id("item"), self.position))
        unconfirmed = self._detector.unconfirmed_ms
        keep = self.position if unconfirmed is None else min(self.position, self._at(unconfirmed))
        return [*intents, Forget(keep - max(self.padding, MIN_AUDIO))]

    def end(self) -> None:
        """The turn was committed or abandoned."""
        self.item_id, self.start, self.clips = None, None, 0

    def restart(self) -> None:
        """Forget the turn in progress: the buffer was committed or cleared by the client."""
        self.end()
        self._detector_origin = self.position
        self._detector = self._new_detector()

    @property
    def _respond(self) -> bool:
        return bool(self.settings.create_response)

    def _at(self, ms: int) -> int:
        """The stream position of a time the detector reports."""
        return self._detector_origin + ms * PER_MS

    def _idle_for(self, responding: bool) -> bool:
        timeout = self.settings.idle_timeout_ms
        if timeout is None or self.idle_from is None or responding:
            return False
        return self.position - self.idle_from >= timeout * PER_MS

    def _new_detector(self) -> TurnDetector:
        assert self.settings.threshold is not None and self.settings.silence_duration_ms is not None
        return TurnDetector(self.settings.threshold, self.settings.silence_duration_ms)
