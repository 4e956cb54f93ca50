"""Server-side tools over the wire: with one server tool, `tool_choice` "required" makes the tiny model call
it (a client cannot name a server tool), and the runtime runs it itself; the client sees the call, the output
item with the function's real output, and the response the server continues with — every frame validated
against openai's and Pipecat's types by the RawClient."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Annotated

import pytest
from pydantic import Field

from aural.runtime.server.timeouts import Timeouts
from aural.sdk.tools import Tools
from tests.support.client import (
    RECV_TIMEOUT,
    RawClient,
    add_text,
    assert_consistent,
    assert_error,
    assert_turn_works,
    read_response,
)

pytestmark = pytest.mark.model

Word = Annotated[str, Field(max_length=6)]
Digit = Annotated[int, Field(ge=0, le=9)]


@dataclass
class Signals:
    """What `hold` reports (the server runs on the test's loop)."""

    held: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)


SIGNALS = Signals()


@pytest.fixture
def signals() -> Signals:
    """Fresh signals for `hold`, on the test's loop."""
    global SIGNALS
    SIGNALS = Signals()
    return SIGNALS


def spell(word: Word) -> dict[str, object]:
    """The letters of a word."""
    return {"word": word, "letters": list(word)}


def broken(digit: Digit) -> str:
    """Always fails."""
    raise RuntimeError(f"out of order ({digit})")


async def hold(digit: Digit) -> str:
    """Runs until it is cancelled."""
    SIGNALS.held.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        SIGNALS.stopped.set()
        raise
    return str(digit)


async def _call(session: RawClient, name: str) -> tuple[dict[str, object], str]:
    """Ask for a call of the one server tool, `name`; returns the call item and its response's id, read up to
    `response.done`."""
    await add_text(session, "Spell 'cat'.")
    await session.send({"type": "response.create", "response": {"tool_choice": "required", "max_output_tokens": 80}})
    turn = await read_response(session)
    assert turn.response["status"] == "completed"
    [call] = turn.response["output"]
    assert call["type"] == "function_call" and call["name"] == name
    assert turn.one("response.function_call_arguments.done")["arguments"] == call["arguments"]
    return call, turn.response_id


async def _output(session: RawClient, call: dict[str, object]) -> str:
    """The output item's added/done events, right after the call's response; returns the output."""
    added = await session.expect("conversation.item.added")
    done = await session.expect("conversation.item.done")
    assert added["item"] == done["item"]
    item = done["item"]
    assert item["type"] == "function_call_output" and item["call_id"] == call["call_id"]
    assert added["previous_item_id"] == call["id"]
    output: str = item["output"]
    return output


@pytest.mark.app(server_tools=Tools([spell]))
async def test_a_server_tool_runs_and_the_server_continues(session: RawClient) -> None:
    await session.send({"type": "session.update", "session": {"tools": [], "tool_choice": "auto"}})
    updated = await session.expect("session.updated")
    assert updated["session"]["tools"] == [], "session objects list only the client's tools"
    call, first = await _call(session, "spell")
    arguments = json.loads(str(call["arguments"]))
    output = await _output(session, call)
    assert json.loads(output) == {"word": arguments["word"], "letters": list(arguments["word"])}
    follow = await read_response(session)
    assert follow.events[0]["type"] == "response.created" and follow.response_id != first
    assert_consistent(follow)
    assert [item["type"] for item in follow.response["output"]] == ["message"]
    await assert_turn_works(session)


@pytest.mark.app(server_tools=Tools([broken]))
async def test_a_tool_that_raises_gives_an_error_output_and_the_conversation_goes_on(session: RawClient) -> None:
    call, _ = await _call(session, "broken")
    digit = json.loads(str(call["arguments"]))["digit"]
    output = await _output(session, call)
    assert json.loads(output) == {"error": f"broken raised RuntimeError: out of order ({digit})"}
    assert_consistent(await read_response(session))
    await assert_turn_works(session)


@pytest.mark.app(server_tools=Tools([hold]))
async def test_cancel_stops_a_running_tool_and_its_continuation(session: RawClient, signals: Signals) -> None:
    _, response_id = await _call(session, "hold")
    async with asyncio.timeout(RECV_TIMEOUT):
        await signals.held.wait()
    await session.send({"type": "response.cancel", "response_id": response_id})
    async with asyncio.timeout(RECV_TIMEOUT):
        await signals.stopped.wait()
    await assert_turn_works(session)  # no output item and no continuation came in between


@pytest.mark.app(server_tools=Tools([hold]), timeouts=Timeouts(resume_grace=0.2))
async def test_a_disconnect_stops_a_running_tool(session: RawClient, signals: Signals) -> None:
    await _call(session, "hold")
    async with asyncio.timeout(RECV_TIMEOUT):
        await signals.held.wait()
    assert session.disconnect is not None
    await session.disconnect(True)
    async with asyncio.timeout(RECV_TIMEOUT):
        await signals.stopped.wait()


@pytest.mark.app(server_tools=Tools([spell]))
async def test_a_client_cannot_force_a_server_tool_by_name_nor_learn_it(session: RawClient) -> None:
    errors = []
    for name in ("spell", "no_such_tool"):
        choice = {"type": "function", "name": name}
        await session.send({"type": "response.create", "response": {"tool_choice": choice}})
        error = await session.expect("error")
        assert_error(error, "invalid_value", param="response.tool_choice.name")
        errors.append(error["error"]["message"].replace(name, "NAME"))
    assert errors[0] == errors[1], "a server tool's name is refused as an unknown name is"
    await assert_turn_works(session)
