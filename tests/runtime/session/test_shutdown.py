"""`ShuttingDown`: the server's drain ends a conversation's work through the session's own cancel path."""

from __future__ import annotations

import pytest

from aural.runtime.engine.base import GenerationDone, ToolCallDone
from aural.runtime.session.commands import CancelResponse, CancelTools, RunTools, StartResponse
from aural.runtime.session.inputs import ShuttingDown
from aural.runtime.session.session import ConversationSession
from aural.sdk.tools import Tools
from tests.support.fake_engine import CAPABILITIES
from tests.support.session import generated, receive, send, types
from tests.support.tools import get_time


@pytest.fixture
def session() -> ConversationSession:
    session = ConversationSession("tiny", CAPABILITIES, server_tools=Tools([get_time]).definitions)
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "What time is it?"}]}
    send(session, type="conversation.item.create", item=item)
    return session


def test_a_running_response_is_cancelled_and_no_new_one_starts(session: ConversationSession) -> None:
    start = send(session, type="response.create")[-1]
    assert isinstance(start, StartResponse) and session.busy
    generated(session, start.response_id, "It is")
    assert receive(session, ShuttingDown()) == [CancelResponse(start.response_id)]
    done = generated(session, start.response_id, GenerationDone("cancelled"))
    assert types(done)[-1] == "response.done" and not session.busy
    assert done[-1].response.status == "cancelled"
    assert done[-1].response.status_details.reason is None, "no wire reason names a shutdown"
    assert session.items.messages()[-1].parts == ("It is",), "the item keeps the text the client got"
    (refused,) = send(session, type="response.create", event_id="late")
    assert (refused.error.code, refused.error.event_id) == ("server_shutting_down", "late")


def test_an_idle_session_has_nothing_to_cancel(session: ConversationSession) -> None:
    assert receive(session, ShuttingDown()) == [] and not session.busy


def test_server_tool_calls_stop(session: ConversationSession) -> None:
    start = send(session, type="response.create")[-1]
    assert isinstance(start, StartResponse)
    ran = generated(session, start.response_id, ToolCallDone(0, "get_time", "{}"))
    ran += generated(session, start.response_id, GenerationDone("stop"))
    assert isinstance(ran[-1], RunTools) and session.busy, "a round of server tools runs"
    assert receive(session, ShuttingDown()) == [CancelTools((start.response_id,))]
    assert not session.busy
