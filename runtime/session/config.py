"""The session's configuration: the object `session.created/updated` carry, and what an update makes of it.

Pure functions of the configuration; the router keeps it and acts on what changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from aural.protocols import client_events as ce
from aural.protocols import server_events as se
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import (
    AudioConfig,
    AudioInputConfig,
    FunctionTool,
    PcmFormat,
    ResponseParams,
    RetentionRatioTruncation,
    SemanticVad,
    SessionConfig,
    Truncation,
)

from ..engine.base import ModelCapabilities
from ..engine.base import Truncation as EngineTruncation
from .tool_calls import check_tools
from .turn_taking import with_defaults
from .wire_errors import error_event

MAX_OUTPUT_TOKENS = 4096
_FIELDS = (
    "instructions",
    "max_output_tokens",
    "truncation",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
)


def initial_config(session_id: str, model: str) -> SessionConfig:
    """A new session's configuration: text out, GA PCM in, no tools, manual turns."""
    return SessionConfig(
        id=session_id,
        object="realtime.session",
        model=model,
        output_modalities=["text"],
        audio=AudioConfig(input=AudioInputConfig(format=PcmFormat())),
        tools=[],
        tool_choice="auto",
        max_output_tokens="inf",
        truncation="auto",
    )


def updated_config(
    config: SessionConfig, event: ce.SessionUpdate, server_tools: Sequence[FunctionTool], model: ModelCapabilities
) -> tuple[SessionConfig, list[se.Error]]:
    """`config` with the fields `event` sets, and the errors of the fields left unchanged (`semantic_vad`).

    Raises:
        ProtocolError: an update that fails a check, which changes nothing.
    """
    update, notes = event.session, []
    config = config.model_copy(deep=True)
    for name in _FIELDS:
        if name in update.model_fields_set:
            setattr(config, name, getattr(update, name))
    check_max_tokens(config.max_output_tokens, "session.max_output_tokens")
    check_tools(config.tools or [], config.tool_choice, "session", model.check_schema, bool(server_tools))
    _check_truncation(config.truncation, model.context_window)
    audio_in = update.audio.input if update.audio else None
    if audio_in is not None:
        assert config.audio and config.audio.input
        if audio_in.format is not None:
            config.audio.input.format = audio_in.format
        if "transcription" in audio_in.model_fields_set:
            config.audio.input.transcription = audio_in.transcription
        if "turn_detection" in audio_in.model_fields_set:
            detection = audio_in.turn_detection
            if isinstance(detection, SemanticVad):
                message = "Turn detection 'semantic_vad' is not supported: use 'server_vad'. Left unchanged."
                param = "session.audio.input.turn_detection.type"
                error = ProtocolError(ErrorCode.UNSUPPORTED, message, param=param, event_id=event.event_id)
                notes.append(error_event(error))
            else:
                config.audio.input.turn_detection = with_defaults(detection) if detection else None
    return config, notes


def max_tokens_for(params: ResponseParams, config: SessionConfig) -> int | Literal["inf"] | None:
    """A response's token limit: its own, or the session's.

    Raises:
        ProtocolError: a limit out of range.
    """
    max_tokens = params.max_output_tokens if params.max_output_tokens is not None else config.max_output_tokens
    check_max_tokens(max_tokens, "response.max_output_tokens")
    return max_tokens


def engine_truncation(truncation: Truncation | None) -> EngineTruncation:
    """The engine's view of the session's `truncation` (absent: "auto")."""
    if truncation == "disabled":
        return EngineTruncation("disabled")
    if isinstance(truncation, RetentionRatioTruncation):
        limits = truncation.token_limits
        return EngineTruncation(
            "retention_ratio", truncation.retention_ratio, limits.post_instructions if limits else None
        )
    return EngineTruncation()


def _check_truncation(truncation: Truncation | None, context_window: int) -> None:
    limits = truncation.token_limits if isinstance(truncation, RetentionRatioTruncation) else None
    if limits is not None and limits.post_instructions is not None and limits.post_instructions >= context_window:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"post_instructions must be under the model's context window ({context_window} tokens).",
            param="session.truncation.token_limits.post_instructions",
        )


def check_max_tokens(value: object, param: str) -> None:
    """Raises: ProtocolError for a limit other than "inf" or 1 to `MAX_OUTPUT_TOKENS`."""
    if isinstance(value, int) and not 1 <= value <= MAX_OUTPUT_TOKENS:
        raise ProtocolError(
            ErrorCode.INVALID_VALUE,
            f"max_output_tokens must be 'inf' or 1 to {MAX_OUTPUT_TOKENS}.",
            param=param,
        )
