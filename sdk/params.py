"""What the SDK sends: typed settings checked into the protocol's models, and events encoded as they are set.

`Connection.update_session(**SessionSettings)` and `Connection.create_response(**ResponseSettings)` take
keyword arguments typed by these dictionaries (or the protocol's own `SessionConfig` / `ResponseParams`):
the model is built and validated before anything is sent, so that a wrong name raises `TypeError` and a
bad value `pydantic.ValidationError` (a `ValueError`) in the caller.

In `session.update` what is given is sent and what is not is not: None is sent as `null`, which is how
turn detection or transcription are switched off (and instructions, tools... dropped). In
`response.create` a setting left out or None takes the session's value.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, TypedDict, TypeVar

from pydantic import BaseModel

from aural.protocols import ClientEvent
from aural.protocols.models import (
    AudioConfig,
    AudioFormat,
    AudioInputConfig,
    AudioTranscription,
    FunctionTool,
    InputItem,
    MaxTokens,
    Modality,
    ResponseParams,
    SessionConfig,
    ToolChoice,
    Truncation,
    TurnDetection,
)

from .tools import Tool, Tools

ToolDefinitions: TypeAlias = Tools | Iterable[Tool[..., Any] | FunctionTool]
"""Tools as `session.update` and `response.create` take them: a registry, `@tool`s or wire definitions."""


class ReplySettings(TypedDict, total=False):
    """How the model replies: settings of the session (`update_session`) or of one response (`create_response`).

    Attributes:
        instructions: the system prompt.
        tools: functions the model may call: a `Tools` registry, `@tool`s or `FunctionTool`s. Only their
            definitions are sent: the connection's own `tools` answer the calls.
        tool_choice: "auto", "none", "required", or `ToolChoiceFunction(name=...)` to force one tool.
        parallel_tool_calls: whether one response may make several calls.
        max_output_tokens: the most tokens a response may have (1 to 4096), or "inf".
        temperature: sampling temperature; absent or 0: greedy decoding (an Aural extension). A server with
            default limits takes 0.6 to 1.2 (`aural.protocols.limits.Limits`).
        top_p: nucleus sampling, above 0 up to 1 (an Aural extension).
        output_modalities: what responses produce (Aural produces text).
    """

    instructions: str | None
    tools: ToolDefinitions | None
    tool_choice: ToolChoice | None
    parallel_tool_calls: bool | None
    max_output_tokens: MaxTokens | None
    temperature: float | None
    top_p: float | None
    output_modalities: Sequence[Modality] | None


class SessionSettings(ReplySettings, total=False):
    """What `update_session` changes: `ReplySettings`, and the input audio's (`session.audio.input`).

    Attributes:
        input_format: the input audio's format: `PcmFormat(rate=..., channels=..., encoding=...)`,
            `PcmuFormat()`, `PcmaFormat()`, or a compressed stream such as `StreamFormat(type="audio/ogg")`.
        turn_detection: `ServerVad(...)`: the server finds the turns and answers them; None: manual
            commits (turn detection off).
        transcription: `AudioTranscription(...)`: the server transcribes each committed turn; None: off.
        truncation: what happens when the conversation outgrows the model's context: "auto" (the oldest
            messages go, down to 3/4 of the limit), "disabled" (a response that does not fit fails), or
            `RetentionRatioTruncation(retention_ratio=..., token_limits=TokenLimits(post_instructions=...))`.
    """

    input_format: AudioFormat | None
    turn_detection: TurnDetection | None
    transcription: AudioTranscription | None
    truncation: Truncation | None


class ResponseSettings(ReplySettings, total=False):
    """What `create_response` asks for: `ReplySettings` for this response only (None: the session's), and
    where the response reads and writes.

    Attributes:
        conversation: "none" for an out-of-band response, which the conversation does not keep.
        input: the items the response reads instead of the conversation: `MessageItem`s,
            `FunctionCallItem`s, `FunctionCallOutputItem`s, `ItemReference(id=...)`s.
        metadata: string pairs, echoed in `response.created` and `response.done`.
    """

    conversation: Literal["auto", "none"] | None
    input: Sequence[InputItem] | None
    metadata: Mapping[str, str] | None


_AUDIO_INPUT = {"input_format": "format", "turn_detection": "turn_detection", "transcription": "transcription"}
"""`SessionSettings` that go into `session.audio.input`, by their name there."""


def _definitions(tools: ToolDefinitions) -> list[FunctionTool]:
    """The wire definitions of tools."""
    if isinstance(tools, Tools):
        return tools.definitions
    return [item.definition if isinstance(item, Tool) else item for item in tools]


_TO_WIRE: dict[str, Callable[[Any], Any]] = {
    "tools": _definitions,
    "output_modalities": list,
    "input": list,
    "metadata": dict,
}
"""How a setting's value becomes the model's field, where it is not taken as it is."""

_Model = TypeVar("_Model", bound=BaseModel)


def session_config(base: SessionConfig | None, settings: SessionSettings) -> SessionConfig:
    """`base` (or an empty session) with `settings` set on top, validated.

    Raises:
        TypeError: a name that is not a `SessionSettings` key.
        pydantic.ValidationError: a value the protocol refuses.
    """
    fields = _wire_fields(settings, SessionSettings.__optional_keys__)
    audio_input = {_AUDIO_INPUT[name]: fields.pop(name) for name in _AUDIO_INPUT if name in fields}
    config = base or SessionConfig()
    if audio_input:
        audio = config.audio or AudioConfig()
        fields["audio"] = _updated(audio, {"input": _updated(audio.input or AudioInputConfig(), audio_input)})
    return _updated(config, fields)


def response_params(base: ResponseParams | None, settings: ResponseSettings) -> ResponseParams:
    """`base` (or no parameters) with the `settings` that are not None set on top, validated.

    Raises:
        TypeError: a name that is not a `ResponseSettings` key.
        pydantic.ValidationError: a value the protocol refuses.
    """
    fields = _wire_fields(settings, ResponseSettings.__optional_keys__)
    return _updated(base or ResponseParams(), {name: value for name, value in fields.items() if value is not None})


def _wire_fields(settings: Mapping[str, Any], names: frozenset[str]) -> dict[str, Any]:
    """The settings as the model's fields; refuses names that are not settings (they would be dropped)."""
    unknown = sorted(settings.keys() - names)
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(unknown)}; the settings are: {', '.join(sorted(names))}")
    return {
        name: value if value is None or name not in _TO_WIRE else _TO_WIRE[name](value)
        for name, value in settings.items()
    }


def _updated(model: _Model, fields: dict[str, Any]) -> _Model:
    """A validated copy of `model` with `fields` set on top of the fields it has set."""
    current = {name: getattr(model, name) for name in model.model_fields_set}
    return type(model).model_validate({**current, **fields})


def encode_client_event(event: ClientEvent) -> str:
    """The event as a websocket message: fields left unset are left out, fields set to None are `null`."""
    return json.dumps(_as_set(event), separators=(",", ":"), ensure_ascii=False)


def _as_set(model: BaseModel) -> dict[str, Any]:
    """The model as JSON, as `exclude_none` dumps it but with the fields set to None, at every depth."""
    data = model.model_dump(mode="json", exclude_none=True)
    for name in model.model_fields_set:
        value = getattr(model, name)
        if value is None:
            data[name] = None
        elif isinstance(value, BaseModel):
            data[name] = _as_set(value)
        elif isinstance(value, list):
            dumped = data[name]
            data[name] = [_as_set(item) if isinstance(item, BaseModel) else dumped[i] for i, item in enumerate(value)]
    return data
