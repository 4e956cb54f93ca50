"""Voice activity detection on real speech: silero-vad's probabilities through the turn detector.

espeak-ng phrases with silences of known length; the detected turns must match the true speech segments
within ±100 ms, clean and under white noise at -40 dBFS, however the audio is chunked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from aural.runtime.audio.vad import WINDOW_SAMPLES, SileroVad, VadStream
from aural.runtime.engine.base import AudioSamples
from aural.runtime.session.turn_detector import SpeechStarted, SpeechStopped, TurnDetector
from tests.support.speech import Utterance, utterance

PHRASES = [
    "Hello there how are you today",
    "I would like to order a large coffee",
    "What time is it in Tokyo",
    "Please turn off the lights",
    "Is it going to rain tomorrow afternoon",
    "Play some music",
]
GAPS = [0.3, 1.0, 0.45, 2.0, 0.6]
TOLERANCE_MS = 100


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad.load()


@pytest.fixture(scope="module")
def speech() -> Utterance:
    return utterance(PHRASES, GAPS)


def noisy(samples: AudioSamples, dbfs: float | None) -> AudioSamples:
    if dbfs is None:
        return samples
    noise = np.random.default_rng(7).normal(0.0, 10 ** (dbfs / 20), len(samples))
    return (samples + noise).astype(np.float32)


def chunks(samples: AudioSamples, size: int) -> Iterator[AudioSamples]:
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def turns(probabilities: list[float], silence_duration_ms: int) -> list[tuple[int, int]]:
    events = TurnDetector(silence_duration_ms=silence_duration_ms).push(probabilities)
    starts = [e.start_ms for e in events if isinstance(e, SpeechStarted)]
    ends = [e.end_ms for e in events if isinstance(e, SpeechStopped)]
    return list(zip(starts, ends, strict=True))


def assert_close(found: list[tuple[int, int]], truth: list[tuple[float, float]]) -> None:
    assert len(found) == len(truth), f"found {found}, expected {truth}"
    for (start, end), (true_start, true_end) in zip(found, truth, strict=True):
        assert abs(start - true_start * 1000) <= TOLERANCE_MS, (start, true_start)
        assert abs(end - true_end * 1000) <= TOLERANCE_MS, (end, true_end)


@pytest.mark.parametrize("dbfs", [None, -40.0])
def test_every_gap_longer_than_the_silence_duration_splits_a_turn(
    vad: SileroVad, speech: Utterance, dbfs: float | None
) -> None:
    probabilities = vad.stream().probabilities(noisy(speech.samples, dbfs))
    assert_close(turns(probabilities, silence_duration_ms=150), speech.segments)


@pytest.mark.parametrize("dbfs", [None, -40.0])
def test_gaps_shorter_than_the_silence_duration_stay_inside_a_turn(
    vad: SileroVad, speech: Utterance, dbfs: float | None
) -> None:
    probabilities = vad.stream().probabilities(noisy(speech.samples, dbfs))
    s = speech.segments  # gaps of 0.3, 0.45 and 0.6 s are pauses; 1 and 2 s end turns
    assert_close(
        turns(probabilities, silence_duration_ms=800), [(s[0][0], s[1][1]), (s[2][0], s[3][1]), (s[4][0], s[5][1])]
    )


def test_a_blip_of_voice_in_the_silence_does_not_start_a_turn(vad: SileroVad, speech: Utterance) -> None:
    samples = speech.samples.copy()
    source, target = (int(t * 16000) for t in (speech.segments[0][0] + 0.2, speech.segments[3][1] + 1.0))
    samples[target : target + 480] = speech.samples[source : source + 480]  # 30 ms of voice mid-gap
    probabilities = vad.stream().probabilities(samples)
    assert turns(probabilities, silence_duration_ms=150) == turns(
        vad.stream().probabilities(speech.samples), silence_duration_ms=150
    )
    blips = TurnDetector(silence_duration_ms=150, min_speech_ms=0).push(probabilities)
    assert sum(isinstance(e, SpeechStarted) for e in blips) == len(speech.segments) + 1  # the model did hear it


@pytest.mark.parametrize("size", [320, 7, 511, 513])
def test_chunking_does_not_change_the_probabilities(vad: SileroVad, speech: Utterance, size: int) -> None:
    samples = noisy(speech.samples[:80_000], -40.0)
    whole = vad.stream().probabilities(samples)
    assert len(whole) == len(samples) // WINDOW_SAMPLES == len(samples) // TurnDetector.WINDOW_SAMPLES
    stream = vad.stream()
    assert [p for chunk in chunks(samples, size) for p in stream.probabilities(chunk)] == whole


def test_interleaved_streams_do_not_share_state(vad: SileroVad, speech: Utterance) -> None:
    first, second = speech.samples[:64_000], noisy(speech.samples[64_000:128_000], -40.0)
    alone = [vad.stream().probabilities(first), vad.stream().probabilities(second)]
    streams: list[VadStream] = [vad.stream(), vad.stream()]
    together: list[list[float]] = [[], []]
    for one, two in zip(chunks(first, 320), chunks(second, 320), strict=True):
        together[0] += streams[0].probabilities(one)
        together[1] += streams[1].probabilities(two)
    assert together == alone


def test_streams_in_different_threads_do_not_share_state(vad: SileroVad, speech: Utterance) -> None:
    inputs = [noisy(speech.samples[:48_000], dbfs) for dbfs in (None, -40.0, -30.0, -50.0)]
    alone = [vad.stream().probabilities(samples) for samples in inputs]
    results: list[list[float]] = [[] for _ in inputs]

    def run(index: int) -> None:
        stream = vad.stream()
        for chunk in chunks(inputs[index], 320):
            results[index] += stream.probabilities(chunk)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(inputs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == alone


def test_stereo_input_is_refused(vad: SileroVad) -> None:
    with pytest.raises(ValueError, match="mono"):
        vad.stream().probabilities(np.zeros((2, 512), np.float32))
