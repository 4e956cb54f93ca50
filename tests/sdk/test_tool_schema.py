"""`schema_from_function` / `arguments_model`: JSON Schema from type hints and docstrings, and validation."""

from __future__ import annotations

import json
import sys
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field, ValidationError
from typing_extensions import TypedDict

from aural.sdk.tools import arguments_model, schema_from_function


class Unit(Enum):
    C = "c"
    F = "f"


@dataclass
class Point:
    x: float
    y: float = 0.0


class Address(TypedDict):
    street: str
    number: int


class Booking(BaseModel):
    title: str
    seats: Annotated[int, Field(ge=1)]


class Tree(BaseModel):
    children: list[Tree]


def get_weather(city: str, unit: Literal["c", "f"] = "c") -> str:
    """The current weather in a city.

    Said in one sentence.

    Args:
        city: the city's name,
            in English.
        unit (str): degrees Celsius or Fahrenheit.

    Returns:
        A sentence about the weather.
    """
    return city


def every_type(
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    tags: list[str],
    scores: dict[str, int],
    maybe: int | None,
    unit: Unit,
    point: Point,
    address: Address,
    booking: Booking,
    points: list[Point] | None = None,
) -> None:
    """Takes one of each."""


def test_a_documented_function() -> None:
    definition = schema_from_function(get_weather)
    assert definition.type == "function"
    assert definition.name == "get_weather"
    assert definition.description == "The current weather in a city.\n\nSaid in one sentence."
    assert definition.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "the city's name, in English."},
            "unit": {
                "type": "string",
                "enum": ["c", "f"],
                "default": "c",
                "description": "degrees Celsius or Fahrenheit.",
            },
        },
        "required": ["city"],
        "additionalProperties": False,
    }


def test_every_supported_type() -> None:
    parameters = schema_from_function(every_type).parameters
    assert parameters is not None
    props = parameters["properties"]
    assert [props[name]["type"] for name in ("text", "count", "ratio", "flag")] == [
        "string",
        "integer",
        "number",
        "boolean",
    ]
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["scores"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["maybe"] == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert props["unit"] == {"type": "string", "enum": ["c", "f"]}
    point = {
        "type": "object",
        "properties": {"x": {"type": "number"}, "y": {"type": "number", "default": 0.0}},
        "required": ["x"],
        "additionalProperties": False,
    }
    assert props["point"] == point
    assert props["points"] == {"anyOf": [{"type": "array", "items": point}, {"type": "null"}], "default": None}
    assert props["address"] == {
        "type": "object",
        "properties": {"street": {"type": "string"}, "number": {"type": "integer"}},
        "required": ["street", "number"],
        "additionalProperties": False,
    }
    # A property named "title" survives; pydantic's titles do not.
    assert props["booking"]["properties"] == {"title": {"type": "string"}, "seats": {"type": "integer", "minimum": 1}}
    assert props["booking"]["additionalProperties"] is False
    # Required: exactly the parameters without a default, an Optional one included.
    assert parameters["required"] == [
        "text",
        "count",
        "ratio",
        "flag",
        "tags",
        "scores",
        "maybe",
        "unit",
        "point",
        "address",
        "booking",
    ]
    assert "title" not in parameters and "title" not in props["booking"]
    assert "$ref" not in json.dumps(parameters) and "$defs" not in json.dumps(parameters)
    jsonschema.Draft202012Validator.check_schema(parameters)


def test_bounds_and_descriptions_from_annotated_fields() -> None:
    def book(
        seats: Annotated[int, Field(ge=1, le=8, description="how many people")],
        name: Annotated[str, Field(max_length=40)],
        note: str = "",
    ) -> None:
        """Books a table.

        Args:
            seats: overridden by the Field's own description.
            name: the name on the booking.
        """

    parameters = schema_from_function(book).parameters
    assert parameters is not None
    assert parameters["properties"] == {
        "seats": {"type": "integer", "minimum": 1, "maximum": 8, "description": "how many people"},
        "name": {"type": "string", "maxLength": 40, "description": "the name on the booking."},
        "note": {"type": "string", "default": ""},
    }
    assert parameters["required"] == ["seats", "name"]


def test_a_default_that_looks_like_a_schema_is_kept_as_is() -> None:
    def configure(options: dict[str, str] = {"title": "x"}) -> None:  # noqa: B006
        """Configures."""

    parameters = schema_from_function(configure).parameters
    assert parameters is not None
    assert parameters["properties"]["options"]["default"] == {"title": "x"}


def test_name_and_description_can_be_given() -> None:
    def undocumented(x: int) -> None:
        pass

    assert schema_from_function(undocumented).description is None
    definition = schema_from_function(undocumented, name="double-it", description="Doubles x.")
    assert (definition.name, definition.description) == ("double-it", "Doubles x.")
    with pytest.raises(ValueError, match="invalid tool name"):
        schema_from_function(undocumented, name="no spaces")


def _star_args(*values: int) -> None: ...
def _star_kwargs(**values: int) -> None: ...
def _positional_only(value: int, /) -> None: ...
def _no_hint(value) -> None: ...  # type: ignore[no-untyped-def]
def _recursive(tree: Tree) -> None: ...
def _unresolvable(value: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821


@pytest.mark.parametrize(
    ("fn", "message"),
    [
        (_star_args, "'values' cannot be passed by keyword"),
        (_star_kwargs, "'values' cannot be passed by keyword"),
        (_positional_only, "'value' cannot be passed by keyword"),
        (_no_hint, "'value' has no type hint"),
        (_recursive, "recursive type 'Tree'"),
        (_unresolvable, "cannot resolve the type hints"),
    ],
)
def test_refused_signatures(fn: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        schema_from_function(fn)


class PlainTypedDict(typing.TypedDict):
    a: int


def test_typing_typed_dict_before_3_12_is_a_clear_type_error() -> None:
    def takes(value: PlainTypedDict) -> None: ...

    if sys.version_info >= (3, 12):
        assert schema_from_function(takes).parameters is not None
    else:
        with pytest.raises(TypeError, match=r"typing_extensions\.TypedDict"):
            schema_from_function(takes)


VALID = {
    "text": "t",
    "count": 2,
    "ratio": 1,
    "flag": True,
    "tags": ["a"],
    "scores": {"a": 1},
    "maybe": None,
    "unit": "f",
    "point": {"x": 1.5},
    "address": {"street": "Main", "number": 3},
    "booking": {"title": "Dinner", "seats": 2},
}


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"count": "2"},
        {"ratio": "1.0"},
        {"flag": 1},
        {"tags": "a"},
        {"unit": "k"},
        {"point": {"x": 1, "z": 2}},
        {"address": {"street": "Main"}},
        {"booking": {"title": "Dinner", "seats": 0}},
        {"extra": 1},
        {"points": [{"x": 1}, {"y": 2}]},
    ],
)
def test_validation_agrees_with_the_schema(change: dict[str, Any]) -> None:
    arguments = {**VALID, **change}
    schema = schema_from_function(every_type).parameters
    assert schema is not None
    schema_says = jsonschema.Draft202012Validator(schema).is_valid(arguments)
    try:
        arguments_model(every_type).model_validate_json(json.dumps(arguments))
    except ValidationError:
        model_says = False
    else:
        model_says = True
    assert model_says == schema_says == (change == {})


def test_validated_arguments_are_typed_values() -> None:
    model = arguments_model(every_type).model_validate_json(json.dumps(VALID))
    values = dict(model)
    assert values["unit"] is Unit.F
    assert values["point"] == Point(x=1.5)
    assert values["booking"] == Booking(title="Dinner", seats=2)
    assert values["ratio"] == 1.0 and isinstance(values["ratio"], float)
    assert values["points"] is None
    assert list(values) == [*VALID, "points"]
