"""Server tools in the conversation state machine: their calls run, their outputs join, the response continues,
with scripted engine events."""

from __future__ import annotations

import base64
import inspect
from typing import Any

import pytest

from aural.protocols import server_events as se
from aural.runtime.engine.base import GenerationDone, TokenUsage, ToolCallDone
from aural.runtime.session.commands import CancelTools, RunTools, StartResponse
from aural.runtime.session.inputs import Opened, ToolReturned
from aural.runtime.session.session import ConversationSession
from aural.sdk.tools import DEFAULT_MAX_ROUNDS, Tools
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import Output, generated, receive, scored, send, types
from tests.support.tools import get_time, lookup_order

CLIENT = {"type": "function", "name": "weather", "parameters": {"type": "object", "properties": {}}}
SERVER = Tools([get_time, lookup_order]).definitions
ROUNDS = DEFAULT_MAX_ROUNDS  # the SDK's round policy, which the app hands the session


@pytest.fixture
def session() -> ConversationSession:
    session = ConversationSession("tiny", CAPABILITIES, server_tools=SERVER)
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Order 1001?"}]}
    send(session, type="conversation.item.create", item=item)
    return session


def _respond(session: ConversationSession, *calls: str, **response: Any) -> tuple[StartResponse, list[Output]]:
    """Start a response whose reply is `calls` (function names); returns its start and `on_done`'s outputs."""
    command = send(session, type="response.create", response=response)[-1]
    assert isinstance(command, StartResponse)
    for index, name in enumerate(calls):
        generated(session, command.response_id, ToolCallDone(index, name, "{}"))
    return command, generated(session, command.response_id, GenerationDone("stop", TokenUsage(10, 0, 0, 5)))


def test_server_tools_are_offered_but_not_listed(session: ConversationSession) -> None:
    [created] = receive(session, Opened())
    assert isinstance(created, se.SessionCreated) and created.session.tools == []
    start, _ = _respond(session, tool_choice="required")
    assert start.params.tools is not None and start.params.tools.mode == "required"
    assert [spec.name for spec in start.params.tools.functions] == ["get_time", "lookup_order"]
    [update] = send(session, type="session.update", session={"tools": [CLIENT], "tool_choice": "required"})
    assert isinstance(update, se.SessionUpdated) and [t.name for t in update.session.tools or []] == ["weather"]


def test_out_of_band_responses_get_only_the_clients_tools(session: ConversationSession) -> None:
    start = send(session, type="response.create", response={"conversation": "none"})[-1]
    assert isinstance(start, StartResponse) and start.params.tools is None
    generated(session, start.response_id, GenerationDone("stop", TokenUsage(1, 0, 0, 1)))
    choice = {"type": "function", "name": "get_time"}
    [error] = send(session, type="response.create", response={"conversation": "none", "tool_choice": choice})
    assert isinstance(error, se.Error) and error.error.param == "response.tool_choice.name"


@pytest.mark.parametrize("where", ["session", "response"])
def test_a_client_cannot_force_a_server_tool_nor_learn_its_name(session: ConversationSession, where: str) -> None:
    def force(name: str) -> Output:
        """A response that forces `name`, chosen in the session (checked when a response uses it) or the response."""
        choice = {"tool_choice": {"type": "function", "name": name}}
        if where == "session":
            assert types(send(session, type="session.update", session=choice)) == ["session.updated"]
            return send(session, type="response.create")[-1]
        return send(session, type="response.create", response=choice)[-1]

    forced, unknown = force("get_time"), force("no_such_tool")
    assert isinstance(forced, se.Error) and isinstance(unknown, se.Error) and session.response is None
    assert forced.error.param == unknown.error.param == f"{where}.tool_choice.name"
    assert forced.error.message == unknown.error.message.replace("no_such_tool", "get_time"), "no tell-tale"


def test_a_client_tool_hides_the_server_tool_of_its_name(session: ConversationSession) -> None:
    mine = {**CLIENT, "name": "get_time", "description": "The client's own clock."}
    choice = {"type": "function", "name": "get_time"}
    [updated] = send(session, type="session.update", session={"tools": [mine], "tool_choice": choice})
    assert isinstance(updated, se.SessionUpdated)
    start, done = _respond(session, "get_time")
    assert start.params.tools is not None and start.params.tools.function == "get_time"
    [offered, server] = start.params.tools.functions
    assert (offered.name, offered.description, server.name) == ("get_time", mine["description"], "lookup_order")
    assert not any(isinstance(o, RunTools) for o in done), "the client's call is the client's to answer"


def test_server_calls_run_then_their_outputs_join_and_the_response_continues(session: ConversationSession) -> None:
    first, done = _respond(session, "lookup_order", "get_time", tool_choice="required", max_output_tokens=99)
    assert [type(o).__name__ for o in done] == ["ResponseDone", "RateLimitsUpdated", "RunTools"]
    run = done[-1]
    assert isinstance(run, RunTools) and run.response_id == first.response_id
    assert [call.name for call in run.calls] == ["lookup_order", "get_time"]
    outputs = receive(session, ToolReturned(run.calls[1].call_id, "12:00"))
    assert [o.type for o in outputs if isinstance(o, se.ServerEventBase)] == [
        "conversation.item.added", "conversation.item.done"]  # fmt: skip
    assert session.response is None, "one call still runs"
    outputs = receive(session, ToolReturned(run.calls[0].call_id, '{"status": "shipped"}'))
    assert [type(o).__name__ for o in outputs] == [
        "ConversationItemAdded", "ConversationItemDone", "ResponseCreated", "StartResponse"]  # fmt: skip
    follow = outputs[-1]
    assert isinstance(follow, StartResponse) and follow.params.max_tokens == 99
    assert follow.params.tools is not None and follow.params.tools.mode == "auto"
    assert [m.role for m in follow.conversation] == ["user", "assistant", "tool", "tool"]
    assert receive(session, ToolReturned(run.calls[0].call_id, "again")) == [], "an answered call is not answered twice"


def test_a_response_that_also_called_a_client_tool_is_left_to_the_client(session: ConversationSession) -> None:
    send(session, type="session.update", session={"tools": [CLIENT]})
    _, done = _respond(session, "weather", "get_time", tool_choice="required")
    run = done[-1]
    assert isinstance(run, RunTools) and [call.name for call in run.calls] == ["get_time"]
    outputs = receive(session, ToolReturned(run.calls[0].call_id, "12:00"))
    assert [type(o).__name__ for o in outputs] == ["ConversationItemAdded", "ConversationItemDone"]
    assert session.response is None


def test_client_calls_alone_and_cut_responses_run_nothing(session: ConversationSession) -> None:
    send(session, type="session.update", session={"tools": [CLIENT]})
    _, done = _respond(session, "weather", tool_choice="required")
    assert not any(isinstance(o, RunTools) for o in done)
    start = send(session, type="response.create", response={"tool_choice": "required"})[-1]
    assert isinstance(start, StartResponse)
    generated(session, start.response_id, ToolCallDone(0, "get_time", "{}"))
    done = generated(session, start.response_id, GenerationDone("length", TokenUsage(1, 0, 0, 1)))
    assert not any(isinstance(o, RunTools) for o in done)


def test_an_output_for_a_call_the_client_deleted_is_dropped(session: ConversationSession) -> None:
    _, done = _respond(session, "get_time", "lookup_order", tool_choice="required")
    run = done[-1]
    assert isinstance(run, RunTools)
    send(session, type="conversation.item.delete", item_id=run.calls[0].id)
    assert receive(session, ToolReturned(run.calls[0].call_id, "12:00")) == []
    follow = receive(session, ToolReturned(run.calls[1].call_id, "{}"))[-1]
    assert isinstance(follow, StartResponse) and [m.role for m in follow.conversation] == ["user", "assistant", "tool"]


def test_cancel_with_no_response_stops_the_running_calls(session: ConversationSession) -> None:
    first, done = _respond(session, "get_time", tool_choice="required")
    run = done[-1]
    assert isinstance(run, RunTools)
    [error] = send(session, type="response.cancel", response_id="resp_other")
    assert isinstance(error, se.Error) and error.error.code == "response_cancel_not_active"
    assert send(session, type="response.cancel", response_id=first.response_id) == [CancelTools((first.response_id,))]
    assert receive(session, ToolReturned(run.calls[0].call_id, "12:00")) == [], "a cancelled call's output is dropped"
    [error] = send(session, type="response.cancel")
    assert isinstance(error, se.Error)


def _continue(session: ConversationSession, done: list[Output]) -> StartResponse:
    """Answer the server call that ended `done`; returns the continuation."""
    run = done[-1]
    assert isinstance(run, RunTools)
    follow = receive(session, ToolReturned(run.calls[0].call_id, "12:00"))[-1]
    assert isinstance(follow, StartResponse) and follow.params.tools is not None
    return follow


def test_talking_over_stops_the_running_calls(session: ConversationSession) -> None:
    vad = {"format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": {"type": "server_vad"}}
    send(session, type="session.update", session={"audio": {"input": vad}})
    first, _ = _respond(session, "get_time", tool_choice="required")
    windows = 20  # of 32 ms: the audio's content does not matter, its speech probabilities are scripted
    send(session, type="input_audio_buffer.append", audio=base64.b64encode(bytes(2 * 512 * windows)).decode())
    outputs = scored(session, 1, [0.9] * windows)
    assert [o.type for o in outputs if isinstance(o, se.ServerEventBase)] == ["input_audio_buffer.speech_started"]
    assert CancelTools((first.response_id,)) in outputs


def test_after_max_rounds_in_a_row_the_model_must_answer(session: ConversationSession) -> None:
    _, done = _respond(session, "get_time", tool_choice="required")
    modes = []
    for _ in range(ROUNDS):
        follow = _continue(session, done)
        assert follow.params.tools is not None
        modes.append(follow.params.tools.mode)
        generated(session, follow.response_id, ToolCallDone(0, "get_time", "{}"))
        done = generated(session, follow.response_id, GenerationDone("stop", TokenUsage(10, 0, 0, 5)))
    assert modes == ["auto"] * (ROUNDS - 1) + ["none"]
    _, done = _respond(session, "get_time", tool_choice="required")  # a client's response starts a new count
    tools = _continue(session, done).params.tools
    assert tools is not None and tools.mode == "auto"


def test_the_sdk_and_the_runtime_follow_one_round_limit() -> None:
    """The app hands the session its tool runner's `max_rounds`; a session made without one keeps the same."""
    default = inspect.signature(ConversationSession).parameters["max_tool_rounds"].default
    assert default == DEFAULT_MAX_ROUNDS == Tools().max_rounds
