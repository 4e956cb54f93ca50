"""Random event sequences, valid and not, never break the state machine's invariants.

The sequences mix client events with what the driver reports: the engine's text and ends, speech
probabilities of the voice activity model (server VAD turns on and off), transcriptions finishing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aural.protocols import ProtocolError, decode_client_event
from aural.protocols.server_events import ServerEventBase
from aural.runtime.engine.base import GenerationDone, TokenUsage
from aural.runtime.session.commands import Command, DetectSpeech, StartResponse, Transcribe
from aural.runtime.session.inputs import ClientSent, Transcribed
from aural.runtime.session.session import ConversationSession
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import generated, receive, scored

AUDIO = base64.b64encode((np.sin(np.arange(4800) / 7) * 9000).astype("<i2").tobytes()).decode()
IDS = st.sampled_from(["a", "b", "root", "item_nope"])
TEXT = st.text(max_size=12)

MESSAGE = st.fixed_dictionaries(
    {
        "type": st.just("message"),
        "role": st.sampled_from(["user", "assistant", "system", "bot"]),
        "content": st.lists(
            st.one_of(
                st.fixed_dictionaries({"type": st.just("input_text"), "text": TEXT}),
                st.fixed_dictionaries({"type": st.just("output_text"), "text": TEXT}),
                st.fixed_dictionaries({"type": st.just("input_audio"), "audio": st.sampled_from([AUDIO, "@@", ""])}),
            ),
            max_size=3,
        ),
    },
    optional={"id": IDS},
)
EVENT = st.one_of(
    st.fixed_dictionaries({"type": st.just("input_audio_buffer.append"), "audio": st.sampled_from([AUDIO, "x!"])}),
    st.just({"type": "input_audio_buffer.commit"}),
    st.just({"type": "input_audio_buffer.clear"}),
    st.fixed_dictionaries(
        {"type": st.just("conversation.item.create"), "item": MESSAGE}, optional={"previous_item_id": IDS}
    ),
    st.fixed_dictionaries({"type": st.just("conversation.item.delete"), "item_id": IDS}),
    st.fixed_dictionaries({"type": st.just("conversation.item.retrieve"), "item_id": IDS}),
    st.fixed_dictionaries(
        {"type": st.just("response.create")},
        optional={
            "response": st.fixed_dictionaries(
                {},
                optional={
                    "conversation": st.sampled_from(["auto", "none"]),
                    "max_output_tokens": st.sampled_from([1, 0, "inf", 5000]),
                    "instructions": TEXT,
                    "input": st.lists(
                        st.fixed_dictionaries({"type": st.just("item_reference"), "id": IDS}), max_size=2
                    ),
                },
            )
        },
    ),
    st.fixed_dictionaries({"type": st.just("response.cancel")}, optional={"response_id": IDS}),
    st.fixed_dictionaries(
        {"type": st.just("conversation.item.truncate"), "item_id": IDS, "content_index": st.integers(0, 2)},
        optional={"audio_end_ms": st.sampled_from([0, 150, 99_000]), "text_end": st.integers(0, 20)},
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("session.update"),
            "session": st.fixed_dictionaries(
                {},
                optional={
                    "instructions": TEXT,
                    "max_output_tokens": st.sampled_from([4, 0, "inf"]),
                    "audio": st.sampled_from(
                        [
                            {"input": {"format": {"type": "audio/pcmu"}}},
                            {"input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 96}}},
                            {"input": {"turn_detection": None, "transcription": {"language": "en"}}},
                        ]
                    ),
                },
            ),
        },
    ),
    st.sampled_from(["{", "[]", '{"type": "nope"}']),
    st.just("engine"),  # the engine finishes the running response
    st.just("delta"),  # the engine produces text for it
    st.sampled_from(["speech", "silence"]),  # the voice activity model reports on the audio sent so far
    st.just("transcribed"),  # a transcription side pass ends
)


def _check(outputs: list[Any]) -> None:
    for output in outputs:
        assert isinstance(output, ServerEventBase | Command)
        if isinstance(output, ServerEventBase):
            json.loads(output.model_dump_json())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENT, max_size=25))
def test_any_sequence_keeps_the_invariants(events: list[Any]) -> None:
    session = ConversationSession("tiny", CAPABILITIES)
    running: str | None = None
    heard: list[DetectSpeech] = []  # audio the voice activity model has not reported on yet
    transcribing: list[Transcribe] = []
    for raw in events:
        outputs: list[Any] = []
        if raw in ("engine", "delta"):
            if running is not None and raw == "delta":
                outputs = generated(session, running, "hé")
            elif running is not None:
                outputs = generated(session, running, GenerationDone("stop", TokenUsage(10, 2, 0, 1)))
                running = None
        elif raw in ("speech", "silence"):
            for command in heard:
                windows = [0.9 if raw == "speech" else 0.0] * (command.samples.size // 512)
                outputs += scored(session, command.stream, windows)
            heard = []
        elif raw == "transcribed":
            for command in transcribing:
                outputs += receive(session, Transcribed(command.item_id, command.content_index, GenerationDone("stop")))
            transcribing = []
        else:
            try:
                event = decode_client_event(raw if isinstance(raw, str) else json.dumps(raw))
            except ProtocolError:
                continue
            outputs = receive(session, ClientSent(event))
        _check(outputs)
        heard += [o for o in outputs if isinstance(o, DetectSpeech)]
        transcribing += [o for o in outputs if isinstance(o, Transcribe)]
        starts = [o for o in outputs if isinstance(o, StartResponse)]
        assert len(starts) <= 1 and not (starts and running), "one response at a time"
        if starts:
            running = starts[0].response_id
        ids = [stored.id for stored in session.items]
        assert len(ids) == len(set(ids)), "item ids are unique"
        assert (session.response is None) == (running is None)
