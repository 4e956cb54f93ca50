"""The one place where the runtime's failures become wire error codes, and errors become `error` events."""

from __future__ import annotations

from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import ErrorDetail

from ..errors import (
    AudioError,
    CallTooLong,
    ContextExceeded,
    GrammarError,
    KVBudgetExceeded,
    ModelFailure,
    RuntimeFailure,
    ToolFailure,
)

_CODES: dict[type[RuntimeFailure], ErrorCode] = {
    ContextExceeded: ErrorCode.CONTEXT_EXCEEDED,
    KVBudgetExceeded: ErrorCode.KV_BUDGET_EXCEEDED,
    GrammarError: ErrorCode.SERVER_ERROR,
    CallTooLong: ErrorCode.TOOL_CALL_INCOMPLETE,
    ModelFailure: ErrorCode.SERVER_ERROR,
    AudioError: ErrorCode.BAD_AUDIO,
    ToolFailure: ErrorCode.SERVER_ERROR,
}
_CLIENT_FAULTS = (ContextExceeded, KVBudgetExceeded, AudioError, CallTooLong)
"""Failures a client can avoid (a shorter conversation, valid audio, a function that needs fewer tokens); the
rest are the server's."""
_PARAMS: dict[type[RuntimeFailure], str] = {AudioError: "audio"}
"""The field that carried the failing input, where it is always the same one."""


def wire_code(failure: RuntimeFailure) -> ErrorCode:
    """The wire code of a failure (its nearest class with one; `server_error` otherwise)."""
    for cls in type(failure).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return ErrorCode.SERVER_ERROR


def wire_error(failure: RuntimeFailure, event_id: str | None = None) -> ProtocolError:
    """The protocol error that tells a client about `failure` (caused by client event `event_id`)."""
    error_type = "invalid_request_error" if isinstance(failure, _CLIENT_FAULTS) else "server_error"
    param = next((name for cls, name in _PARAMS.items() if isinstance(failure, cls)), None)
    return ProtocolError(wire_code(failure), failure.message, param=param, event_id=event_id, error_type=error_type)


def failure_event(failure: ProtocolError | RuntimeFailure, event_id: str | None) -> se.Error:
    """The `error` event for a failure that client event `event_id` caused."""
    if isinstance(failure, RuntimeFailure):
        return error_event(wire_error(failure, event_id))
    failure.event_id = failure.event_id or event_id
    return error_event(failure)


def error_event(exc: ProtocolError) -> se.Error:
    """The `error` event for a protocol error."""
    detail = ErrorDetail(
        type=exc.error_type, code=exc.code.value, message=exc.message, param=exc.param, event_id=exc.event_id
    )
    return se.Error(error=detail)
