"""Several conversations on one engine: no cross-talk, and a dropped connection frees its session."""

from __future__ import annotations

import asyncio

import pytest

from aural.runtime.server.timeouts import Timeouts
from tests.support.client import Turn, assert_consistent, assert_error, assert_turn_works, audio_turn, cancel

from .conftest import Connect, Endpoint, open_session, open_sessions, start_runaway, wait_for_sessions

pytestmark = pytest.mark.model


async def test_turns_on_another_connection_while_a_response_runs(connect: Connect, speech_pcm: bytes) -> None:
    reference = await audio_turn(await open_session(connect), speech_pcm)  # the same turn, alone on the engine
    busy, other = await open_session(connect), await open_session(connect)
    running = await start_runaway(busy)

    await other.send({"type": "response.frobnicate", "event_id": "evt_other"})
    assert_error(await other.expect("error"), "unknown_event_type", param="type", event_id="evt_other")
    turn = await audio_turn(other, speech_pcm)
    assert_consistent(turn)
    assert turn.streamed_text == reference.streamed_text, "the other conversation's state did not leak in"
    assert turn.response["usage"] == reference.response["usage"]

    cancelled = await cancel(busy, running)
    assert cancelled.response["status"] == "cancelled", "the first response ran throughout the other's turn"
    assert_consistent(cancelled)
    assert "error" not in {event["type"] for event in busy.events}, "the bad event stayed on its own connection"
    assert running not in {event.get("response_id") for event in other.events}
    assert turn.response_id not in {event.get("response_id") for event in busy.events}


async def test_simultaneous_turns_match_a_lone_turn(connect: Connect, speech_pcm: bytes) -> None:
    reference = await audio_turn(await open_session(connect), speech_pcm, max_tokens=48)
    clients = [await open_session(connect), await open_session(connect)]
    turns: list[Turn] = await asyncio.gather(*(audio_turn(client, speech_pcm, max_tokens=48) for client in clients))
    assert len({turn.response_id for turn in turns}) == 2
    for client, turn in zip(clients, turns, strict=True):
        assert_consistent(turn)
        assert turn.streamed_text == reference.streamed_text
        assert turn.response["usage"] == reference.response["usage"]
        assert {event.get("response_id", turn.response_id) for event in client.events} == {turn.response_id}


@pytest.mark.app(timeouts=Timeouts(resume_grace=0.2))  # a dropped conversation waits this long for a resume
@pytest.mark.parametrize("abrupt", [False, True], ids=["close", "abort"])
async def test_disconnect_mid_response_frees_the_session(server: Endpoint, connect: Connect, abrupt: bool) -> None:
    leaving = await open_session(connect)
    await start_runaway(leaving)
    assert await open_sessions(server) == 1
    assert leaving.disconnect is not None
    await leaving.disconnect(abrupt)
    await wait_for_sessions(server, 0)
    await assert_turn_works(await open_session(connect))
