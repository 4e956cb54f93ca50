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


ERROR_TRIGGERS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_JSON: "A text message that is not JSON, or holds `NaN` or `Infinity`.",
    ErrorCode.UNKNOWN_EVENT: "A `type` that names no client event.",
    ErrorCode.INVALID_EVENT: "A message that is not a JSON object or has no string `type`; a missing or mistyped "
    "field (`param` names it); a binary frame without the `aural.binary-audio` subprotocol.",
    ErrorCode.INVALID_VALUE: "A well-typed value that cannot be honoured: content a role cannot hold, a content "
    "part or offset the item does not have, an item id or `call_id` already used, a `function_call_output` for an "
    "unknown `call_id`, a duplicate tool name, tool `parameters` that are not a usable JSON Schema, "
    "`tool_choice: required` without tools, `max_output_tokens` out of range.",
    ErrorCode.BAD_AUDIO: "Audio that is not base64, too short, or cannot be decoded in the declared format "
    "(wrong magic bytes, damaged frames, a plain M4A whose index comes last).",
    ErrorCode.MODEL_NOT_FOUND: "A `?model=` the server does not serve (sent, then the handshake closes with 1008).",
    ErrorCode.BUFFER_EMPTY: "`input_audio_buffer.commit` with less than the shortest turn in the buffer.",
    ErrorCode.BUFFER_FULL: "Appended audio beyond what the input buffer holds: commit or clear it.",
    ErrorCode.ITEM_NOT_FOUND: "An `item_id`, `previous_item_id` or `item_reference` naming no item.",
    ErrorCode.RESPONSE_ACTIVE: "`response.create` while a response of the conversation is running.",
    ErrorCode.NO_ACTIVE_RESPONSE: "`response.cancel` with no response running (or not the one named).",
    ErrorCode.CONTEXT_EXCEEDED: "A response whose conversation does not fit the model's context with "
    '`truncation: "disabled"` (the response fails).',
    ErrorCode.KV_BUDGET_EXCEEDED: "The KV cache pool cannot hold the conversation (`aural serve --kv-budget`, "
    "`--on-full error`); the response fails.",
    ErrorCode.TOOL_CALL_INCOMPLETE: "A function call cut off by `max_output_tokens`: its item is deleted, never "
    "sent as a call.",
    ErrorCode.SERVER_ERROR: "A failure of the server itself (the model, a tool grammar, a server tool, a bug); "
    "`error.type` is `server_error` and the conversation goes on.",
    ErrorCode.TOO_MANY_SESSIONS: "The server, or the caller's key, is at its session limit (sent, then the "
    "handshake closes with 1008).",
    ErrorCode.CONVERSATION_FULL: "An item beyond the conversation's bounds (items, seconds of audio, characters "
    "of text): delete items to make room.",
    ErrorCode.STRING_TOO_LONG: "A string above its bound (see Limits).",
    ErrorCode.ARRAY_TOO_LONG: "An array above its bound (see Limits).",
    ErrorCode.EMPTY_ARRAY: "An empty `output_modalities`.",
    ErrorCode.TOO_MANY_PROPERTIES: "`metadata` with more pairs than its bound.",
    ErrorCode.BELOW_MIN_VALUE: "A `temperature` above 0 but below its lowest value.",
    ErrorCode.ABOVE_MAX_VALUE: "A `temperature` above its highest value.",
    ErrorCode.NESTING_TOO_DEEP: "A message, or a tool's `parameters`, nesting objects and arrays too deep.",
    ErrorCode.SCHEMA_TOO_LARGE: "A tool's `parameters`, or all the tools' of one event, above their size bound.",
    ErrorCode.INVALID_TEXT: "A lone UTF-16 surrogate escape (`\\ud800`) in a string or key.",
    ErrorCode.NUMBER_OUT_OF_RANGE: "A number JSON parses as infinite (`1e400`) or an integer of more than 19 digits.",
    ErrorCode.RATE_LIMITED: "Messages above the connection's rate: the message is dropped.",
    ErrorCode.IDLE_TIMEOUT: "A connection silent for longer than the server's idle timeout (sent, then closed).",
    ErrorCode.SESSION_NOT_FOUND: "An `aural.resume` naming no conversation, or one whose grace period passed "
    "(sent, then the handshake closes).",
    ErrorCode.SHUTTING_DOWN: "`response.create` while the server drains for shutdown: reconnect to reach another.",
}
"""What makes the server send each code, for a person writing a client (written into docs/protocol.md)."""


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
