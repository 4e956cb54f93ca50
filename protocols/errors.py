"""Error codes of the wire protocol and the exception that carries one.

ProtocolError          bad input from a client: becomes an `error` event, the session goes on
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    """Codes sent in `error.code`. Where OpenAI has a code for the same condition, it is reused."""

    INVALID_JSON = "invalid_json"
    UNKNOWN_EVENT = "unknown_event_type"
    INVALID_EVENT = "invalid_request_error"
    INVALID_VALUE = "invalid_value"
    BAD_AUDIO = "invalid_audio"
    UNSUPPORTED = "unsupported"
    MODEL_NOT_FOUND = "model_not_found"
    BUFFER_EMPTY = "input_audio_buffer_commit_empty"
    BUFFER_FULL = "input_audio_buffer_full"
    ITEM_NOT_FOUND = "item_not_found"
    RESPONSE_ACTIVE = "conversation_already_has_active_response"
    NO_ACTIVE_RESPONSE = "response_cancel_not_active"
    CONTEXT_EXCEEDED = "context_length_exceeded"
    KV_BUDGET_EXCEEDED = "kv_budget_exceeded"
    TOOL_CALL_INCOMPLETE = "tool_call_incomplete"
    SERVER_ERROR = "server_error"
    TOO_MANY_SESSIONS = "session_limit_reached"
    CONVERSATION_FULL = "conversation_full"
    # Bounds on client input (`limits.Limits`): OpenAI's codes where it has them.
    STRING_TOO_LONG = "string_above_max_length"
    ARRAY_TOO_LONG = "array_above_max_length"
    EMPTY_ARRAY = "empty_array"
    TOO_MANY_PROPERTIES = "object_above_max_properties"
    BELOW_MIN_VALUE = "decimal_below_min_value"
    ABOVE_MAX_VALUE = "decimal_above_max_value"
    NESTING_TOO_DEEP = "nesting_too_deep"
    SCHEMA_TOO_LARGE = "tool_schema_too_large"
    INVALID_TEXT = "invalid_unicode"
    NUMBER_OUT_OF_RANGE = "number_out_of_range"
    RATE_LIMITED = "rate_limit_exceeded"
    IDLE_TIMEOUT = "idle_timeout"
    SESSION_NOT_FOUND = "session_not_found"
    SHUTTING_DOWN = "server_shutting_down"


class ProtocolError(Exception):
    """A client event that cannot be honoured. Never fatal to the conversation.

    Args:
        code: the wire error code.
        message: a sentence for a person, saying what was wrong.
        param: the offending field, dotted (`session.audio.input.format`), when one is known.
        event_id: the `event_id` of the client event that caused it.
        error_type: `invalid_request_error` for client mistakes, `server_error` for the server's.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        param: str | None = None,
        event_id: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.event_id = event_id
        self.error_type = error_type
