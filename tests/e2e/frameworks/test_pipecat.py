"""Pipecat's OpenAI Realtime service at Aural (examples/pipecat_bot.py): a typed turn, a spoken turn found by
server VAD, and a forced call whose result goes back before the answer, through a real Pipecat pipeline."""

from __future__ import annotations

import json

import jsonschema
import pytest

from examples.pipecat_bot import WEATHER, converse
from tests.support.scripts import ROOT, SAMPLE, printed_replies, run_script

from ..conftest import MODEL, Endpoint

pytestmark = pytest.mark.model

CALL_TOKENS = 160
"""Room for the forced call (about 100 of the tiny model's byte-level tokens) and for the answer after it."""


async def test_a_typed_turn(server: Endpoint) -> None:
    transcript = await converse(server.realtime_url, model=MODEL, text="Hello!", max_output_tokens=16)
    assert transcript.errors == []
    [reply] = transcript.replies
    assert reply, "the reply's text came down the pipeline"


async def test_a_spoken_turn_as_a_script(server: Endpoint) -> None:
    """The script as a user runs it: the bot greets, then the frames of examples/sample.wav and silence come;
    server VAD finds the turn and answers it."""
    output = await run_script(
        str(ROOT / "examples/pipecat_bot.py"), SAMPLE, "--url", server.realtime_url, "--max-output-tokens", "16"
    )
    _greeting, answer = printed_replies(output)
    assert answer > 0 and "error" not in output.lower(), output


async def test_a_forced_call_then_the_answer(server: Endpoint) -> None:
    ask = "Weather in Oslo?"
    transcript = await converse(
        server.realtime_url, model=MODEL, text=ask, force_tool=True, max_output_tokens=CALL_TOKENS
    )
    assert transcript.errors == []
    [(name, arguments, result)] = transcript.calls
    schema = {"type": "object", "properties": WEATHER.properties, "required": WEATHER.required}
    jsonschema.validate(json.loads(arguments), schema)
    assert name == "get_weather" and json.loads(result) == {**json.loads(arguments), "temperature": 21, "unit": "c"}
    call_reply, answer = transcript.replies
    assert call_reply == "" and answer, "the call's reply has no text; the answer has"
