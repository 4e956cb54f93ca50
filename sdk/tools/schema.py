"""A function tool's wire definition from a Python function: JSON Schema from its type hints and docstring.

    def get_weather(city: str, unit: Literal["c", "f"] = "c") -> str:
        '''The current weather in a city.

        Args:
            city: the city's name, in English.
            unit: degrees Celsius or Fahrenheit.
        '''

    schema_from_function(get_weather).parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city's name, in English."},
            "unit": {"type": "string", "enum": ["c", "f"], "default": "c", "description": "degrees ..."},
        },
        "required": ["city"],
        "additionalProperties": False,
    }

Types map as pydantic maps them: str/int/float/bool, `Literal` and `Enum` → `enum`, `list[...]`, `dict[str, ...]`,
`X | None` → `anyOf` with null, pydantic models, dataclasses and TypedDicts (from `typing_extensions` before
Python 3.12) → nested objects, `Annotated[int, Field(ge=1)]` → bounds. Nested objects are written inline (no
`$ref`), without pydantic's titles, and every object with properties refuses others (`additionalProperties`).
The same parameters model (`arguments_model`) validates a call's arguments, so schema and validation agree.
A schema given as it is (`parameters=`) is checked with `jsonschema`. Used by `@tool`, so by the SDK's tools and
the server's (`aural serve --tools`) alike.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin, get_type_hints

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, create_model
from pydantic.fields import FieldInfo

from aural.protocols.models import FunctionTool

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""The names OpenAI accepts for a function tool."""

_SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Return|Raises|Yields|Examples?|Notes?|Attributes):\s*$")
_ARGS_SECTIONS = {"Args", "Arguments", "Parameters"}
_ARG_ENTRY = re.compile(r"^\**(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")

# Keywords whose value is one schema, a list of schemas, or a mapping of names to schemas. Only these are
# walked, so that a default or an enum value that happens to contain "title" or "$ref" is left alone.
_ONE_SCHEMA = ("items", "additionalProperties", "not", "contains", "propertyNames")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")
_SCHEMA_MAPS = ("properties", "patternProperties")


def schema_from_function(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> FunctionTool:
    """The `FunctionTool` definition of `fn`: its name, its docstring's summary and its parameters' JSON Schema.

    Args:
        fn: a function (or coroutine function) whose parameters all have type hints; they are passed by
            keyword, so `*args`, `**kwargs` and positional-only parameters are refused.
        name: the tool's name; `fn.__name__` by default.
        description: the tool's description; by default the docstring up to its first section (`Args:`...).
        parameters: the parameters' JSON Schema, used as given instead of being derived from `fn`'s
            signature (which then needs no type hints). Either way the schema must be a valid JSON Schema of an
            object (checked with `jsonschema`).

    Raises:
        TypeError: a parameter without a type hint, of a kind that cannot be passed by keyword, or of a type
            with no JSON Schema (recursive types included).
        ValueError: a name OpenAI would refuse (letters, digits, `_` and `-`, at most 64), or `parameters`
            that are not a valid JSON Schema of `"type": "object"`.
    """
    tool_name = name if name is not None else fn.__name__
    if not TOOL_NAME.match(tool_name):
        raise ValueError(f"invalid tool name {tool_name!r}: use letters, digits, '_' and '-' (at most 64)")
    if parameters is None:
        schema = arguments_model(fn).model_json_schema()
        parameters = _tidy(schema, schema.get("$defs", {}), ())
    parameters_validator(parameters)
    summary, _ = _parse_docstring(fn)
    return FunctionTool(
        name=tool_name, description=description if description is not None else summary, parameters=parameters
    )


def arguments_model(fn: Callable[..., Any]) -> type[BaseModel]:
    """A pydantic model of `fn`'s parameters, which validates a call's JSON arguments strictly.

    Unknown arguments are refused; its fields, in order, are `fn`'s keyword arguments. Parameter
    descriptions come from the docstring's `Args:` section unless an `Annotated` `Field` gives one.

    Raises:
        TypeError: as for `schema_from_function`.
    """
    _, arg_docs = _parse_docstring(fn)
    try:
        hints = get_type_hints(fn, include_extras=True)
    except NameError as exc:
        raise TypeError(f"cannot resolve the type hints of {fn.__qualname__}: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise TypeError(f"{fn.__qualname__}: parameter {param.name!r} cannot be passed by keyword")
        if param.name not in hints:
            raise TypeError(f"{fn.__qualname__}: parameter {param.name!r} has no type hint")
        hint = hints[param.name]
        doc = arg_docs.get(param.name)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hint, Field(default, description=doc) if doc and not _described(hint) else default)
    try:
        return create_model(f"{fn.__name__}_arguments", __config__=ConfigDict(extra="forbid", strict=True), **fields)
    except PydanticUserError as exc:
        raise TypeError(f"{fn.__qualname__}: {exc}") from exc


def parameters_validator(parameters: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A `jsonschema` validator of call arguments against `parameters`, once the schema itself is checked.

    The check is JSON Schema's own; whether a runtime can also enforce the schema while decoding is the
    runtime's to say (`aural serve` asks it before loading the model).

    Raises:
        ValueError: `parameters` is not a valid JSON Schema, or not one of `"type": "object"`.
    """
    if parameters.get("type") != "object":
        raise ValueError('a tool\'s parameters must be a JSON Schema of "type": "object"')
    cls = jsonschema.validators.validator_for(parameters)
    try:
        cls.check_schema(parameters)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"invalid parameters schema: {exc.message}") from exc
    return cls(parameters)


def _described(hint: Any) -> bool:
    """Whether an `Annotated` hint carries its own `Field(description=...)`."""
    return get_origin(hint) is Annotated and any(
        isinstance(meta, FieldInfo) and meta.description for meta in get_args(hint)[1:]
    )


def _parse_docstring(fn: Callable[..., Any]) -> tuple[str | None, dict[str, str]]:
    """A Google-style docstring's text before its first section, and its `Args:` entries by name."""
    lines = (inspect.getdoc(fn) or "").splitlines()
    sections = [(index, found.group(1)) for index, line in enumerate(lines) if (found := _SECTION.match(line))]
    bounds = [index for index, _ in sections] + [len(lines)]
    summary = "\n".join(lines[: bounds[0]]).strip() or None
    args: dict[str, str] = {}
    for (begin, header), end in zip(sections, bounds[1:], strict=True):
        if header in _ARGS_SECTIONS:
            args.update(_parse_args(lines[begin + 1 : end]))
    return summary, args


def _parse_args(lines: list[str]) -> dict[str, str]:
    """`name: text` entries at the section's first indentation; deeper lines continue the entry above."""
    entries: dict[str, list[str]] = {}
    indent: int | None = None
    current: list[str] | None = None
    for line in lines:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        entry = _ARG_ENTRY.match(line.strip())
        if depth == indent and entry:
            current = entries.setdefault(entry.group(1), [])
            current.append(entry.group(2))
        elif current is not None and depth > indent:
            current.append(line.strip())
    return {name: " ".join(part for part in parts if part) for name, parts in entries.items()}


def _tidy(schema: dict[str, Any], defs: dict[str, Any], inlining: tuple[str, ...]) -> dict[str, Any]:
    """`schema` with its `$ref`s inlined, its titles dropped and its objects closed to unknown properties."""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = ref.removeprefix("#/$defs/")
        if target in inlining:
            raise TypeError(f"recursive type {target!r}: a tool's parameters must be finite")
        siblings = {key: value for key, value in schema.items() if key != "$ref"}
        return _tidy({**defs[target], **siblings}, defs, (*inlining, target))
    tidy: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("title", "$defs"):
            continue
        if key in _ONE_SCHEMA and isinstance(value, dict):
            value = _tidy(value, defs, inlining)
        elif key in _SCHEMA_LISTS:
            value = [_tidy(item, defs, inlining) for item in value]
        elif key in _SCHEMA_MAPS:
            value = {name: _tidy(item, defs, inlining) for name, item in value.items()}
        tidy[key] = value
    if "properties" in tidy:
        tidy.setdefault("additionalProperties", False)
    return tidy
