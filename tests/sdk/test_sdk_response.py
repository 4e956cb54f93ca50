"""`ResponseStream` against a scripted fake server: binding, deltas, routing, errors, cancellation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from aural.protocols import ServerEvent
from aural.protocols.models import (
    ErrorDetail,
    MessageItem,
    OutputText,
    Response,
    StatusDetails,
    StatusError,
)
from aural.protocols.server_events import (
    ConversationItemAdded,
    Error,
    ResponseCreated,
)
from aural.sdk import AuralResponseError, AuralServerError, connect
from tests.sdk.scripts import OTHER, OURS, created, delta, done, full_response

if TYPE_CHECKING:
    from tests.sdk.conftest import FakeServer


def error(event_id: str | None, code: str = "invalid_value") -> Error:
    detail = ErrorDetail(
        type="invalid_request_error", code=code, message="Not like that.", param="response", event_id=event_id
    )
    return Error(error=detail)


async def test_stream_yields_the_deltas_and_the_final_response(server: FakeServer) -> None:
    server.responders["response.create"] = lambda request: full_response(request, ["Hel", "lo", " there"])
    async with connect(server.url) as conn:
        stream = conn.create_response(instructions="Be brief.", metadata={"topic": "greeting"})
        deltas = [text async for text in stream]
    await server.finished()
    assert deltas == ["Hel", "lo", " there"]
    assert stream.text == "Hello there"
    assert stream.response_id == OURS
    assert stream.response is not None
    assert stream.response.status == "completed"
    assert stream.response.usage is not None and stream.response.usage.output_tokens == 3
    [request] = server.of_type("response.create")
    assert request["event_id"] == stream.event_id
    assert request["response"] == {
        "instructions": "Be brief.",
        "metadata": {"topic": "greeting", "client_event_id": stream.event_id},
    }


async def test_collect_returns_the_text(server: FakeServer) -> None:
    server.responders["response.create"] = lambda request: full_response(request, ["One", ", two"])
    async with connect(server.url) as conn:
        assert await conn.create_response().collect() == "One, two"
        # The stream stops at its response.done: the next one starts from a clean slate.
        assert await conn.create_response().collect() == "One, two"


@pytest.mark.parametrize("is_async", [False, True])
async def test_stream_binds_by_metadata_and_passes_other_events_on(server: FakeServer, is_async: bool) -> None:
    assistant = MessageItem(id="item_a", role="assistant", content=[OutputText(text="")])
    foreign: list[ServerEvent] = []

    def script(request: dict[str, Any]) -> list[ServerEvent]:
        foreign.extend(
            [
                ResponseCreated(response=Response(id=OTHER, metadata={"client_event_id": "evt_someone"})),
                delta("not ours", OTHER),
                ConversationItemAdded(item=assistant),
                error("evt_unrelated"),
                done("completed", OTHER),
            ]
        )
        return [*foreign[:2], created(request), *foreign[2:4], delta("ours"), foreign[4], done("completed")]

    received: list[ServerEvent] = []

    def on_event(event: ServerEvent) -> None:
        received.append(event)

    async def on_event_async(event: ServerEvent) -> None:
        received.append(event)

    server.responders["response.create"] = script
    async with connect(server.url, on_event=on_event_async if is_async else on_event) as conn:
        assert await conn.create_response().collect() == "ours"
    assert received == foreign


async def test_events_of_others_are_dropped_without_on_event(server: FakeServer) -> None:
    server.responders["response.create"] = lambda request: [
        delta("not ours", OTHER),
        *full_response(request, ["ok"]),
    ]
    async with connect(server.url) as conn:
        assert await conn.create_response().collect() == "ok"


@pytest.mark.parametrize("bound", [False, True])
async def test_error_for_the_request_raises(server: FakeServer, bound: bool) -> None:
    def script(request: dict[str, Any]) -> list[ServerEvent]:
        return [created(request), error(request["event_id"])] if bound else [error(request["event_id"])]

    server.responders["response.create"] = script
    async with connect(server.url) as conn:
        stream = conn.create_response()
        with pytest.raises(AuralServerError) as info:
            await stream.collect()
    assert (info.value.code, info.value.message, info.value.param) == (
        "invalid_value",
        "Not like that.",
        "response",
    )
    assert info.value.event_id == stream.event_id
    assert info.value.error_type == "invalid_request_error"


async def test_any_error_before_binding_raises(server: FakeServer) -> None:
    server.responders["response.create"] = lambda request: [error(None, "server_error")]
    async with connect(server.url) as conn:
        with pytest.raises(AuralServerError, match="server_error"):
            await conn.create_response().collect()


def cancellable(server: FakeServer, *, refuse: bool = False) -> None:
    """Responses that stream one delta, then wait: a cancel gets one more delta and response.done."""
    server.responders["response.create"] = lambda request: [created(request), delta("Hel")]

    def on_cancel(cancel: dict[str, Any]) -> list[ServerEvent]:
        if refuse:  # The response finished just before the cancel arrived.
            return [error(cancel["event_id"], "response_cancel_not_active"), done("completed")]
        return [delta("lo"), done("cancelled")]

    server.responders["response.cancel"] = on_cancel


async def test_cancel_sends_response_cancel_and_waits_for_done(server: FakeServer) -> None:
    cancellable(server)
    async with connect(server.url) as conn:
        stream = conn.create_response()
        assert await anext(stream) == "Hel"
        await stream.cancel()
        assert stream.response is not None and stream.response.status == "cancelled"
        assert stream.text == "Hello"
        assert [text async for text in stream] == []
    await server.finished()
    [cancel] = server.of_type("response.cancel")
    assert cancel["response_id"] == OURS


async def test_refused_cancel_still_ends_at_response_done(server: FakeServer) -> None:
    cancellable(server, refuse=True)
    received: list[ServerEvent] = []
    async with connect(server.url, on_event=received.append) as conn:
        stream = conn.create_response()
        await anext(stream)
        await stream.cancel()
    assert stream.response is not None and stream.response.status == "completed"
    assert [type(event) for event in received] == [Error]


async def test_async_with_cancels_when_the_body_raises(server: FakeServer) -> None:
    cancellable(server)
    async with connect(server.url) as conn:
        with pytest.raises(RuntimeError, match="boom"):
            async with conn.create_response() as stream:
                async for _ in stream:
                    raise RuntimeError("boom")
        assert stream.response is not None and stream.response.status == "cancelled"
    await server.finished()
    assert [cancel["response_id"] for cancel in server.of_type("response.cancel")] == [OURS]


async def test_async_with_binds_before_cancelling(server: FakeServer) -> None:
    cancellable(server)
    async with connect(server.url) as conn, conn.create_response() as stream:
        pass  # Leaves before response.created has been read.
    await server.finished()
    assert [event["type"] for event in server.received] == ["response.create", "response.cancel"]
    assert server.of_type("response.cancel")[0]["response_id"] == OURS
    assert stream.response is not None and stream.response.status == "cancelled"


async def test_async_with_leaves_finished_or_failed_streams_alone(server: FakeServer) -> None:
    server.responders["response.create"] = lambda request: full_response(request, ["done"])
    async with connect(server.url) as conn:
        async with conn.create_response() as stream:
            assert await stream.collect() == "done"
        server.responders["response.create"] = lambda request: [error(request["event_id"])]
        with pytest.raises(AuralServerError):
            async with conn.create_response() as stream:
                await stream.collect()
    await server.finished()
    assert server.of_type("response.cancel") == []


async def test_a_failed_response_raises_with_its_reason_and_keeps_its_text(server: FakeServer) -> None:
    reason = StatusError(type="invalid_request_error", code="tool_call_incomplete", message="Too long a call.")
    failed = done("failed", status_details=StatusDetails(type="failed", error=reason))
    server.responders["response.create"] = lambda request: [created(request), delta("Let me"), failed]
    async with connect(server.url) as conn:
        stream = conn.create_response()
        with pytest.raises(AuralResponseError) as raised:
            await stream.collect()
    assert (raised.value.code, raised.value.message, raised.value.error_type) == (
        "tool_call_incomplete",
        "Too long a call.",
        "invalid_request_error",
    )
    assert isinstance(raised.value, AuralServerError) and raised.value.response == failed.response
    assert stream.text == "Let me" and stream.response == failed.response


async def test_a_stream_never_started_sends_nothing(server: FakeServer) -> None:
    async with connect(server.url) as conn:
        await conn.create_response().cancel()
    await server.finished()
    assert server.received == []


def test_bad_parameters_are_refused() -> None:
    conn = connect("ws://127.0.0.1:9/v1/realtime")  # Never opened: the parameters fail first.
    with pytest.raises(TypeError, match="instructionz"):
        conn.create_response(instructionz="typo")
    with pytest.raises(ValueError, match="max_output_tokens"):
        conn.create_response(max_output_tokens="lots")
