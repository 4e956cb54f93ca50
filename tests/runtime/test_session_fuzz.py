"""Random event sequences, valid and not, never break the state machine's invariants."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aural.protocols import ProtocolError, decode_client_event
from aural.protocols.server_events import ServerEventBase
from aural.runtime.audio.pcm import PcmDecoder
from aural.runtime.engine.base import GenerationDone, TokenUsage
from aural.runtime.session.commands import CancelResponse, StartResponse
from aural.runtime.session.session import ConversationSession

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
        {
            "type": st.just("session.update"),
            "session": st.fixed_dictionaries(
                {},
                optional={
                    "instructions": TEXT,
                    "max_output_tokens": st.sampled_from([4, 0, "inf"]),
                    "audio": st.just({"input": {"format": {"type": "audio/pcmu"}}}),
                },
            ),
        },
    ),
    st.sampled_from(["{", "[]", '{"type": "nope"}']),
    st.just("engine"),  # the engine finishes the running response
    st.just("delta"),  # the engine produces text for it
)


def _check(outputs: list[Any]) -> None:
    for output in outputs:
        assert isinstance(output, ServerEventBase | StartResponse | CancelResponse)
        if isinstance(output, ServerEventBase):
            json.loads(output.model_dump_json())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(EVENT, max_size=25))
def test_any_sequence_keeps_the_invariants(events: list[Any]) -> None:
    session = ConversationSession("tiny", PcmDecoder)
    running: str | None = None
    for raw in events:
        if raw in ("engine", "delta"):
            if running is not None:
                if raw == "delta":
                    _check(session.on_delta(running, "hé"))
                    continue
                _check(session.on_done(running, GenerationDone("stop", TokenUsage(10, 2, 0, 1))))
                running = None
            continue
        try:
            event = decode_client_event(raw if isinstance(raw, str) else json.dumps(raw))
        except ProtocolError:
            continue
        outputs = session.handle(event)
        _check(outputs)
        starts = [o for o in outputs if isinstance(o, StartResponse)]
        assert not (starts and running), "one response at a time"
        if starts:
            running = starts[0].response_id
        ids = [stored.id for stored in session.items]
        assert len(ids) == len(set(ids)), "item ids are unique"
        assert (session.response is None) == (running is None)
