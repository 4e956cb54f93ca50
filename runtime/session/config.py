"""The session's configuration: the object `session.created/updated` carry, and what an update makes of it.

Pure functions of the configuration; the router keeps it and acts on what changed.
"""

from __future__ import annotations

from typing import Literal

from aural.protocols import client_events as ce
from aural.protocols.errors import ErrorCode, ProtocolError
from aural.protocols.models import (
    AudioConfig,
    AudioInputConfig,
    PcmFormat,
    ResponseParams,
    RetentionRatioTruncation,
    SemanticVad,
    ServerVad,
    SessionConfig,
    Truncation,
)

from ..engine.base import ModelCapabilities
from ..engine.base import Truncation as EngineTruncation
from .tool_calls import check_tools
from .turn_taking import with_defaults

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


def updated_config(config: SessionConfig, event: ce.SessionUpdate, model: ModelCapabilities) -> SessionConfig:
    """`config` with the fields `event` sets.

    A named `tool_choice` is not checked against the tools here but when a response uses it: clients
    (Pipecat, LiveKit) send tools and tool_choice in separate updates, in either order.

    Raises:
        ProtocolError: an update that fails a check, which changes nothing.
    """
    update = event.session
    config = config.model_copy(deep=True)
    for name in _FIELDS:
        if name in update.model_fields_set:
            setattr(config, name, getattr(update, name))
    check_max_tokens(config.max_output_tokens, "session.max_output_tokens")
    check_tools(config.tools or [], "session", model.check_schema)
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
            config.audio.input.turn_detection = with_defaults(as_server_vad(detection)) if detection else None
    return config


def as_server_vad(detection: ServerVad | SemanticVad) -> ServerVad:
    """The settings Aural runs: `semantic_vad` (the default of LiveKit's OpenAI plugin, an option of Pipecat's)
    runs as `server_vad` with its defaults, keeping `create_response` and `interrupt_response`; `eagerness` has
    no counterpart (Aural has no semantic turn model). The session then reports `server_vad`, what it runs."""
    if isinstance(detection, ServerVad):
        return detection
    return ServerVad(create_response=detection.create_response, interrupt_response=detection.interrupt_response)


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
