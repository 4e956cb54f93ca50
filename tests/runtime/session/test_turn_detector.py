"""The turn detector over synthetic probability sequences: onsets, hysteresis, clicks, endings, chunking."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aural.runtime.session.turn_detector import (
    SpeechEnding,
    SpeechResumed,
    SpeechStarted,
    SpeechStopped,
    TurnDetector,
    TurnEvent,
)

W = TurnDetector.WINDOW_MS


def timeline(probabilities: Sequence[float], **options: int | float) -> list[tuple[int, TurnEvent]]:
    """(window index at which it was emitted, event), pushing one window at a time."""
    detector = TurnDetector(**options)  # type: ignore[arg-type]
    return [(index, event) for index, p in enumerate(probabilities) for event in detector.push([p])]


def test_a_turn_reports_its_true_bounds_and_when_it_was_decided() -> None:
    probabilities = [0.0] * 5 + [0.9] * 10 + [0.0] * 20
    assert timeline(probabilities, silence_duration_ms=320) == [
        (8, SpeechStarted(5 * W)),  # confirmed after 100 ms (4 windows), reported at its onset
        (15, SpeechEnding(15 * W)),  # at the first silent window
        (24, SpeechStopped(15 * W)),  # once the silence has lasted 320 ms from the end of speech
    ]


def test_silence_alone_and_a_click_start_nothing() -> None:
    assert timeline([0.0] * 50) == []
    assert timeline([0.0] * 5 + [1.0] * 3 + [0.0] * 30) == []
    assert timeline([1.0] * 3 + [0.0] * 30, min_speech_ms=64)[0] == (1, SpeechStarted(0))


def test_a_candidate_survives_a_short_gap_but_not_a_long_one() -> None:
    short_gap = [1.0] * 2 + [0.0] * 2 + [1.0] * 6 + [0.0] * 30
    assert timeline(short_gap)[0] == (5, SpeechStarted(0))
    long_gap = [1.0] * 2 + [0.0] * 4 + [1.0] * 6 + [0.0] * 30
    assert timeline(long_gap)[0] == (9, SpeechStarted(6 * W))


def test_hysteresis_between_the_two_thresholds_keeps_the_state() -> None:
    # In speech, 0.4 (above 0.5 - 0.15) is not silence; in silence, 0.45 is not speech.
    speech = [0.0] * 2 + [0.9] * 5 + [0.4] * 10 + [0.9] * 2 + [0.1] + [0.45] * 20
    events = [event for _, event in timeline(speech, silence_duration_ms=500)]
    assert events == [SpeechStarted(2 * W), SpeechEnding(19 * W), SpeechStopped(19 * W)]
    assert timeline([0.0, 0.4, 0.4, 0.4, 0.4, 0.4]) == []


def test_speech_that_resumes_cancels_the_ending() -> None:
    probabilities = [0.9] * 5 + [0.0] * 5 + [0.9] * 5 + [0.0] * 20
    assert timeline(probabilities, silence_duration_ms=300)[:3] == [
        (3, SpeechStarted(0)),
        (5, SpeechEnding(5 * W)),
        (10, SpeechResumed()),  # at the first window of speech again
    ]
    assert [event for _, event in timeline(probabilities, silence_duration_ms=300)][3:] == [
        SpeechEnding(15 * W),
        SpeechStopped(15 * W),
    ]


def test_the_end_is_where_the_probability_began_to_decay() -> None:
    decay = [1.0] * 10 + [0.9, 0.8, 0.6] + [0.1] * 20
    assert SpeechStopped(10 * W) in [event for _, event in timeline(decay)]
    weak_tail = [1.0] * 10 + [0.8] * 10 + [0.1] * 20  # speech that never peaks again is still speech
    assert SpeechStopped(20 * W - TurnDetector.MAX_DECAY_MS) in [event for _, event in timeline(weak_tail)]


def test_turns_follow_one_another_on_one_clock() -> None:
    one = [0.0] * 3 + [1.0] * 6 + [0.0] * 10
    events = [event for _, event in timeline(one * 2, silence_duration_ms=200)]
    starts = [e.start_ms for e in events if isinstance(e, SpeechStarted)]
    stops = [e.end_ms for e in events if isinstance(e, SpeechStopped)]
    assert starts == [3 * W, 22 * W] and stops == [9 * W, 28 * W]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold"):
        TurnDetector(threshold=1.5)
    with pytest.raises(ValueError, match="negative"):
        TurnDetector(silence_duration_ms=-1)


PROBABILITIES = st.lists(st.sampled_from([0.0, 0.1, 0.4, 0.45, 0.6, 0.9, 0.97, 1.0]), max_size=120)


@given(PROBABILITIES, st.lists(st.integers(1, 20), min_size=1), st.sampled_from([0, 100, 300]))
def test_chunking_does_not_change_the_events(probabilities: list[float], sizes: list[int], silence: int) -> None:
    whole = TurnDetector(silence_duration_ms=silence).push(probabilities)
    detector, chunked, start = TurnDetector(silence_duration_ms=silence), [], 0
    for size in sizes * (len(probabilities) // len(sizes) + 1):
        chunked += detector.push(probabilities[start : start + size])
        start += size
    assert chunked == whole


@given(PROBABILITIES, st.sampled_from([0, 100, 300]), st.sampled_from([0, 100]))
def test_events_form_well_ordered_turns(probabilities: list[float], silence: int, min_speech: int) -> None:
    in_turn, last_ending, start = False, None, 0
    for event in TurnDetector(silence_duration_ms=silence, min_speech_ms=min_speech).push(probabilities):
        if isinstance(event, SpeechStarted):
            assert not in_turn and event.start_ms >= start
            in_turn, last_ending, start = True, None, event.start_ms
        elif isinstance(event, SpeechEnding):
            assert in_turn and last_ending is None and event.end_ms > start
            last_ending = event
        elif isinstance(event, SpeechResumed):
            assert in_turn and last_ending is not None
            last_ending = None
        else:
            assert in_turn and last_ending is not None and event.end_ms == last_ending.end_ms
            in_turn, start = False, event.end_ms
