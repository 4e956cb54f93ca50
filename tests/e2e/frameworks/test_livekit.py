"""LiveKit's OpenAI realtime model at Aural (examples/livekit_agent.py), its session driven as LiveKit's
AgentSession drives it: a typed turn, a spoken turn under LiveKit's default turn detection (`semantic_vad`, run
as `server_vad`), and a forced call run by the agent and answered."""

from __future__ import annotations

import json

import pytest

from examples.livekit_agent import converse
from tests.support.scripts import ROOT, SAMPLE, printed_replies, run_script

from ..conftest import MODEL, Endpoint

pytestmark = pytest.mark.model

CALL_TOKENS = 160
"""Room for the forced call (about 100 of the tiny model's byte-level tokens) and for the answer after it."""


def base_url(server: Endpoint) -> str:
    """The base URL LiveKit's plugin takes: it adds /realtime and the model itself."""
    return f"ws://127.0.0.1:{server.port}/v1"


async def test_a_typed_turn(server: Endpoint) -> None:
    transcript = await converse(base_url(server), model=MODEL, text="Hello!", max_output_tokens=16)
    assert transcript.errors == []
    [reply] = transcript.replies
    assert reply


async def test_a_spoken_turn_as_a_script(server: Endpoint) -> None:
    """The script as a user runs it: frames of examples/sample.wav, then silence; the server finds the turn."""
    output = await run_script(
        str(ROOT / "examples/livekit_agent.py"), SAMPLE, "--url", base_url(server), "--max-output-tokens", "16"
    )
    [size] = printed_replies(output)
    assert size > 0 and "error:" not in output, output  # LiveKit's own error logs, and the example's


async def test_a_forced_call_run_by_the_agent_then_the_answer(server: Endpoint) -> None:
    ask = "Weather in Oslo?"
    transcript = await converse(base_url(server), model=MODEL, text=ask, force_tool=True, max_output_tokens=CALL_TOKENS)
    assert transcript.errors == []
    [(name, arguments, output)] = transcript.calls
    city = json.loads(arguments)["city"]
    assert name == "get_weather" and 0 < len(city) <= 12, "the arguments follow the tool's schema"
    assert output == str({"city": city, "temperature": 21, "unit": "c"}), "the agent ran the tool"
    call_reply, answer = transcript.replies
    assert call_reply == "" and answer, "the call's reply has no text; the answer has"
