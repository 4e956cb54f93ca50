"""The bounds a client's events must keep, in one place, and the checks that hold a decoded event to them.

Every bound exists so that the work and memory one event can cost are known: a 1 MiB item id, a tool
schema of 10,000 properties or 100,000 metadata keys would otherwise be accepted, stored and echoed, or
stall the server while it is checked. Where OpenAI's GA API states a bound (ids of 32 characters, 16
metadata pairs), Aural keeps it; the others are generous for any real client. `check_event` raises a
`ProtocolError` whose `code` names the kind of bound (`string_above_max_length`, `array_above_max_length`,
...) and whose `param` is the dotted path of the offending field; the session then goes on unchanged.

The frame, depth and number bounds are kept while decoding (`codec.decode_client_event`), the rate by
the server's connection.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .client_events import (
    ClientEvent,
    ConversationItemCreate,
    ConversationItemDelete,
    ConversationItemRetrieve,
    ConversationItemTruncate,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
)
from .errors import ErrorCode, ProtocolError
from .models import (
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    InputAudio,
    InputItem,
    ItemReference,
    MessageItem,
    ResponseParams,
    SessionConfig,
    ToolChoice,
    ToolChoiceFunction,
)


@dataclass(frozen=True)
class Limits:
    """What one client event may hold, and how many a connection may send.

    Attributes:
        max_message_bytes: the largest websocket message; a larger one closes the connection with 1009
            (OpenAI accepts appends of up to 15 MiB).
        events_per_second: the rate a connection's messages are refilled at; a message over it is dropped
            with `rate_limit_exceeded` and the conversation goes on.
        event_burst: the messages a connection may send at once, above the rate.
        max_json_depth: the deepest nesting of objects and arrays in one message.
        max_event_id_chars: a client's `event_id`.
        max_id_chars: item and response ids (GA: 32).
        max_call_id_chars: a function call's `call_id`.
        max_name_chars: tool names, `tool_choice.name`, a transcription's model and language.
        max_instructions_chars: `instructions` of a session or a response, a transcription's prompt.
        max_text_chars: one content part's text or transcript, a call's arguments or output.
        max_content_parts: the content parts of one message item.
        max_input_items: the items of `response.input`.
        max_metadata_keys: pairs in a response's `metadata` (GA: 16).
        max_metadata_key_chars: a metadata key (GA: 64).
        max_metadata_value_chars: a metadata value (GA: 512).
        min_temperature: the lowest sampling temperature above 0 (0 decodes greedily).
        max_temperature: the highest sampling temperature.
        max_tools: the tools of one session or response.
        max_tool_description_chars: a tool's description.
        max_tool_schema_bytes: one tool's `parameters`, as compact JSON.
        max_tools_bytes: all the tools of one event, as compact JSON: checking a schema (and compiling it
            for constrained decoding) costs time in proportion, so this bounds the work per event.
        max_tool_schema_depth: the nesting of objects and arrays in one tool's `parameters`.
    """

    max_message_bytes: int = 16 * 1024 * 1024
    events_per_second: float = 250.0
    event_burst: int = 500
    max_json_depth: int = 64
    max_event_id_chars: int = 128
    max_id_chars: int = 32
    max_call_id_chars: int = 64
    max_name_chars: int = 64
    max_instructions_chars: int = 65_536
    max_text_chars: int = 65_536
    max_content_parts: int = 16
    max_input_items: int = 256
    max_metadata_keys: int = 16
    max_metadata_key_chars: int = 64
    max_metadata_value_chars: int = 512
    min_temperature: float = 0.6
    max_temperature: float = 1.2
    max_tools: int = 64
    max_tool_description_chars: int = 1024
    max_tool_schema_bytes: int = 16 * 1024
    max_tools_bytes: int = 32 * 1024
    max_tool_schema_depth: int = 32


DEFAULT_LIMITS = Limits()
"""The limits a server keeps unless told otherwise."""

_ID = "≤ {max_id_chars} characters"
_TEXT = "≤ {max_text_chars:,} characters"
_NAME = "≤ {max_name_chars} characters"
_INSTRUCTIONS = "≤ {max_instructions_chars:,} characters"
_TEMPERATURE = "0, or {min_temperature} to {max_temperature}"
_TOOLS = "≤ {max_tools} tools, all their `parameters` ≤ {max_tools_bytes:,} bytes of JSON"
_CALL_ID = "≤ {max_call_id_chars} characters"

FIELD_BOUNDS: dict[str, str] = {
    "ClientEventBase.event_id": "≤ {max_event_id_chars} characters",
    "ConversationItemCreate.previous_item_id": _ID,
    "ConversationItemDelete.item_id": _ID,
    "ConversationItemRetrieve.item_id": _ID,
    "ConversationItemTruncate.item_id": _ID,
    "ResponseCancel.response_id": _ID,
    "SessionConfig.instructions": _INSTRUCTIONS,
    "SessionConfig.output_modalities": "not empty",
    "SessionConfig.temperature": _TEMPERATURE,
    "SessionConfig.tools": _TOOLS,
    "ResponseParams.instructions": _INSTRUCTIONS,
    "ResponseParams.output_modalities": "not empty",
    "ResponseParams.temperature": _TEMPERATURE,
    "ResponseParams.tools": _TOOLS,
    "ResponseParams.input": "≤ {max_input_items} items",
    "ResponseParams.metadata": "≤ {max_metadata_keys} pairs, keys ≤ {max_metadata_key_chars} and values ≤ "
    "{max_metadata_value_chars} characters",
    "AudioTranscription.model": _NAME,
    "AudioTranscription.language": _NAME,
    "AudioTranscription.prompt": _INSTRUCTIONS,
    "FunctionTool.name": _NAME,
    "FunctionTool.description": "≤ {max_tool_description_chars:,} characters",
    "FunctionTool.parameters": "≤ {max_tool_schema_bytes:,} bytes of JSON, nested ≤ {max_tool_schema_depth} deep",
    "ToolChoiceFunction.name": _NAME,
    "MessageItem.id": _ID,
    "MessageItem.content": "≤ {max_content_parts} parts",
    "FunctionCallItem.id": _ID,
    "FunctionCallItem.call_id": _CALL_ID,
    "FunctionCallItem.name": _NAME,
    "FunctionCallItem.arguments": _TEXT,
    "FunctionCallOutputItem.id": _ID,
    "FunctionCallOutputItem.call_id": _CALL_ID,
    "FunctionCallOutputItem.output": _TEXT,
    "ItemReference.id": _ID,
    "InputText.text": _TEXT,
    "InputAudio.transcript": _TEXT,
    "OutputText.text": _TEXT,
}
"""The bounds `check_event` holds each field of a client event to, by `Class.field` (`ClientEventBase.event_id`:
every client event's), as phrases whose `{names}` are `Limits` attributes. The reference (`docs/protocol.md`)
shows them with the field; tests/protocols/test_limits.py checks that each bound of characters is the one kept."""


def field_bound(where: str, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """The bound of field `Class.field` under `limits`, in words (`≤ 32 characters`); None when it has none."""
    phrase = FIELD_BOUNDS.get(where)
    return None if phrase is None else phrase.format(**dataclasses.asdict(limits))


def check_event(event: ClientEvent, limits: Limits = DEFAULT_LIMITS) -> None:
    """Hold a decoded client event to `limits`.

    Raises:
        ProtocolError: the first bound the event breaks, with its code and dotted `param`.
    """
    check = _Checker(limits)
    check.text(event.event_id, limits.max_event_id_chars, "event_id")
    match event:
        case SessionUpdate(session=session):
            check.session(session)
        case ConversationItemCreate(item=item, previous_item_id=previous):
            check.text(previous, limits.max_id_chars, "previous_item_id")
            check.item(item, "item")
        case ConversationItemDelete(item_id=item_id) | ConversationItemRetrieve(item_id=item_id):
            check.text(item_id, limits.max_id_chars, "item_id")
        case ConversationItemTruncate(item_id=item_id):
            check.text(item_id, limits.max_id_chars, "item_id")
        case ResponseCreate(response=params) if params is not None:
            check.response(params)
        case ResponseCancel(response_id=response_id):
            check.text(response_id, limits.max_id_chars, "response_id")


class _Checker:
    """The checks of one event's parts, each raising the `ProtocolError` of the bound it finds broken."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits

    def session(self, session: SessionConfig) -> None:
        self.reply("session", session)
        transcription = session.audio.input.transcription if session.audio and session.audio.input else None
        if transcription is not None:
            where = "session.audio.input.transcription"
            self.text(transcription.model, self.limits.max_name_chars, f"{where}.model")
            self.text(transcription.language, self.limits.max_name_chars, f"{where}.language")
            self.text(transcription.prompt, self.limits.max_instructions_chars, f"{where}.prompt")

    def response(self, params: ResponseParams) -> None:
        limits = self.limits
        self.reply("response", params)
        if params.input is not None:
            self.count(params.input, limits.max_input_items, "response.input")
            for index, entry in enumerate(params.input):
                self.item(entry, f"response.input.{index}")
        if params.metadata is not None:
            self.metadata(params.metadata, "response.metadata")

    def reply(self, where: str, settings: SessionConfig | ResponseParams) -> None:
        """What a session and a response both set: instructions, modalities, sampling and tools."""
        limits = self.limits
        self.text(settings.instructions, limits.max_instructions_chars, f"{where}.instructions")
        if settings.output_modalities is not None and not settings.output_modalities:
            raise ProtocolError(
                ErrorCode.EMPTY_ARRAY,
                "output_modalities must name at least one modality, e.g. ['text'].",
                param=f"{where}.output_modalities",
            )
        temperature = settings.temperature
        if temperature and not limits.min_temperature <= temperature <= limits.max_temperature:
            code = ErrorCode.BELOW_MIN_VALUE if temperature < limits.min_temperature else ErrorCode.ABOVE_MAX_VALUE
            raise ProtocolError(
                code,
                f"temperature must be 0 (greedy) or {limits.min_temperature} to {limits.max_temperature}.",
                param=f"{where}.temperature",
            )
        if settings.tools is not None:
            self.tools(settings.tools, f"{where}.tools")
        self.choice(settings.tool_choice, f"{where}.tool_choice")

    def tools(self, tools: Sequence[FunctionTool], where: str) -> None:
        limits = self.limits
        self.count(tools, limits.max_tools, where)
        total = 0
        for index, tool in enumerate(tools):
            self.text(tool.name, limits.max_name_chars, f"{where}.{index}.name")
            self.text(tool.description, limits.max_tool_description_chars, f"{where}.{index}.description")
            if tool.parameters is None:
                continue
            param = f"{where}.{index}.parameters"
            if json_depth(tool.parameters) > limits.max_tool_schema_depth:
                raise ProtocolError(
                    ErrorCode.NESTING_TOO_DEEP,
                    f"A tool's parameters may nest objects and arrays {limits.max_tool_schema_depth} deep at most.",
                    param=param,
                )
            size = len(json.dumps(tool.parameters, separators=(",", ":"), ensure_ascii=False).encode())
            if size > limits.max_tool_schema_bytes:
                raise ProtocolError(
                    ErrorCode.SCHEMA_TOO_LARGE,
                    f"A tool's parameters may take {limits.max_tool_schema_bytes} bytes of JSON at most; "
                    f"these take {size}.",
                    param=param,
                )
            total += size
            if total > limits.max_tools_bytes:
                raise ProtocolError(
                    ErrorCode.SCHEMA_TOO_LARGE,
                    f"The tools' parameters may take {limits.max_tools_bytes} bytes of JSON at most in all.",
                    param=param,
                )

    def choice(self, choice: ToolChoice | None, where: str) -> None:
        if isinstance(choice, ToolChoiceFunction):
            self.text(choice.name, self.limits.max_name_chars, f"{where}.name")

    def item(self, item: InputItem, where: str) -> None:
        limits = self.limits
        self.text(item.id, limits.max_id_chars, f"{where}.id")
        match item:
            case MessageItem(content=content):
                self.count(content, limits.max_content_parts, f"{where}.content")
                for index, part in enumerate(content):
                    text = part.transcript if isinstance(part, InputAudio) else part.text
                    field = "transcript" if isinstance(part, InputAudio) else "text"
                    self.text(text, limits.max_text_chars, f"{where}.content.{index}.{field}")
            case FunctionCallItem(call_id=call_id, name=name, arguments=arguments):
                self.text(call_id, limits.max_call_id_chars, f"{where}.call_id")
                self.text(name, limits.max_name_chars, f"{where}.name")
                self.text(arguments, limits.max_text_chars, f"{where}.arguments")
            case FunctionCallOutputItem(call_id=call_id, output=output):
                self.text(call_id, limits.max_call_id_chars, f"{where}.call_id")
                self.text(output, limits.max_text_chars, f"{where}.output")
            case ItemReference():
                pass

    def metadata(self, metadata: Mapping[str, str], where: str) -> None:
        limits = self.limits
        if len(metadata) > limits.max_metadata_keys:
            raise ProtocolError(
                ErrorCode.TOO_MANY_PROPERTIES,
                f"metadata may hold {limits.max_metadata_keys} pairs at most; it holds {len(metadata)}.",
                param=where,
            )
        for key, value in metadata.items():
            if len(key) > limits.max_metadata_key_chars:
                raise ProtocolError(
                    ErrorCode.STRING_TOO_LONG,
                    f"A metadata key may be {limits.max_metadata_key_chars} characters at most.",
                    param=where,
                )
            self.text(value, limits.max_metadata_value_chars, f"{where}.{key}")

    @staticmethod
    def text(value: str | None, limit: int, param: str) -> None:
        if value is not None and len(value) > limit:
            raise ProtocolError(
                ErrorCode.STRING_TOO_LONG,
                f"'{param}' may be {limit} characters at most; it is {len(value)}.",
                param=param,
            )

    @staticmethod
    def count(values: Sequence[Any], limit: int, param: str) -> None:
        if len(values) > limit:
            raise ProtocolError(
                ErrorCode.ARRAY_TOO_LONG,
                f"'{param}' may hold {limit} entries at most; it holds {len(values)}.",
                param=param,
            )


def json_depth(value: Any) -> int:
    """The nesting of objects and arrays in a decoded JSON value (a scalar: 0)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
