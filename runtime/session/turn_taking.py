"""Server VAD for one session: where the user's current turn lies in the input audio stream.

The driver runs the voice activity model over every decoded sample (a "detection stream"; a new one
starts whenever detection is switched on or reconfigured) and reports one speech probability per
512-sample window. `TurnTaking` turns them, through the `TurnDetector`, into events placed at
absolute positions of the session's stream, and remembers the turn in progress: the item id it will
become (announced in `speech_started`), where its committed audio begins (onset minus
`prefix_padding_ms`) and how many of its 30 s clips were already handed to the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aural.protocols.models import ServerVad

from ..engine.base import SAMPLE_RATE
from .turn_detector import SpeechEnding, SpeechStarted, SpeechStopped, TurnDetector

DEFAULTS = ServerVad(
    threshold=0.5,
    prefix_padding_ms=300,
    silence_duration_ms=500,
    create_response=True,
    interrupt_response=True,
    idle_timeout_ms=None,
)
_PER_MS = SAMPLE_RATE // 1000


def with_defaults(settings: ServerVad) -> ServerVad:
    """`settings` with OpenAI's defaults for every field left out."""
    given = settings.model_dump(exclude_none=True)
    return DEFAULTS.model_copy(update=given)


@dataclass(frozen=True)
class Started:
    onset: int  # sample position where speech began


@dataclass(frozen=True)
class Ending:
    end: int  # sample position where speech (tentatively) ended


@dataclass(frozen=True)
class Stopped:
    end: int


TurnChange = Started | Ending | Stopped


class TurnTaking:
    """The state of server VAD in one session.

    Args:
        settings: the session's `server_vad` settings, defaults filled in.
        stream: the detection stream's number.
        position: the sample position of the detection stream's first sample.
    """

    def __init__(self, settings: ServerVad, stream: int, position: int) -> None:
        self.settings = settings
        self.stream = stream
        self._origin = position
        self._windows = 0
        self._detector_origin = position
        self._detector = self._new_detector()
        self.item_id: str | None = None
        self.start: int | None = None  # where the turn's committed audio begins, while speech goes on
        self.clips = 0  # completed 30 s clips of the turn already prefilled
        self.idle_from: int | None = None  # where the idle timer started (after a response)

    @property
    def position(self) -> int:
        """The sample position up to which detection has run."""
        return self._origin + self._windows * TurnDetector.WINDOW_SAMPLES

    @property
    def padding(self) -> int:
        assert self.settings.prefix_padding_ms is not None
        return self.settings.prefix_padding_ms * _PER_MS

    def push(self, probabilities: Sequence[float]) -> list[TurnChange]:
        """The next windows' speech probabilities → turn changes at absolute positions."""
        changes: list[TurnChange] = []
        for event in self._detector.push(probabilities):
            if isinstance(event, SpeechStarted):
                changes.append(Started(self._detector_origin + event.start_ms * _PER_MS))
            elif isinstance(event, SpeechEnding):
                changes.append(Ending(self._detector_origin + event.end_ms * _PER_MS))
            else:
                assert isinstance(event, SpeechStopped)
                changes.append(Stopped(self._detector_origin + event.end_ms * _PER_MS))
        self._windows += len(probabilities)
        return changes

    def begin(self, item_id: str, start: int) -> None:
        """A turn began: its item will be `item_id`, its audio starts at `start`."""
        self.item_id, self.start, self.clips, self.idle_from = item_id, start, 0, None

    def end(self) -> None:
        """The turn was committed or abandoned."""
        self.item_id, self.start, self.clips = None, None, 0

    def restart(self) -> None:
        """Forget the turn in progress: the buffer was committed or cleared by the client."""
        self.end()
        self._detector_origin = self.position
        self._detector = self._new_detector()

    def _new_detector(self) -> TurnDetector:
        assert self.settings.threshold is not None and self.settings.silence_duration_ms is not None
        return TurnDetector(self.settings.threshold, self.settings.silence_duration_ms)
