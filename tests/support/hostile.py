"""Hostile client messages, for fuzzing the server (the wire fuzz test and `bench/fuzz.py`).

Three kinds, as hypothesis strategies:

- `schema_events()`: client events generated from the protocol's own JSON Schema (`aural.protocols.schema`),
  so every event type and field is reached, valid or not (values are drawn within the schema's types,
  not its business rules).
- `mutated_events()`: those events with one hostile change at a random place: a lone surrogate, a huge
  string, a wrong type, deep nesting, a number out of range, 100,000 keys.
- `bad_frames()`: frames that no event can be: JSON nested 1,000 deep, `NaN`, `1e400`, `10**5000`, not
  JSON at all, binary garbage, arrays and scalars instead of objects, unknown types. Each must get exactly
  one `error`.

A frame is a `Frame`: its text (or bytes), and whether the server must refuse it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from aural.protocols.schema import build_schema

DEFS: dict[str, Any] = build_schema()["$defs"]
TEXT = st.text(max_size=12)
_RAW = "\x00raw{}\x00"
"""A placeholder string replaced, after `json.dumps`, by raw JSON text `json.dumps` cannot write."""


@dataclass(frozen=True)
class Frame:
    """One websocket message: `data` (text, or bytes for a binary frame); `refused`: it must get an error."""

    data: str | bytes
    refused: bool
    kind: str


# --- events from the schema ------------------------------------------------------------------------

_BY_REF: dict[str, st.SearchStrategy[Any]] = {}
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def from_schema(node: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of a (pydantic-generated) JSON Schema node: refs, unions, constants and the JSON types."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in _BY_REF:
            _BY_REF[name] = st.deferred(lambda: from_schema(DEFS[name]))
        return _BY_REF[name]
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if union := node.get("oneOf") or node.get("anyOf"):
        return st.one_of([from_schema(member) for member in union])
    match node.get("type"):
        case "object" if "properties" in node:
            required = node.get("required", ())  # a list, in the schema's order: a set's order varies by process
            fields = {name: from_schema(sub) for name, sub in node["properties"].items()}
            return st.fixed_dictionaries(
                {name: fields[name] for name in fields if name in required},
                optional={name: fields[name] for name in fields if name not in required},
            )
        case "object":
            extra = node.get("additionalProperties")
            values = from_schema(extra) if isinstance(extra, dict) and extra else JSON_VALUES
            return st.dictionaries(TEXT, values, max_size=4)
        case "array":
            return st.lists(from_schema(node.get("items", {})), max_size=3)
        case "string":
            return TEXT
        case "integer":
            return st.integers(node.get("minimum", -10), node.get("maximum", 100_000))
        case "number":
            return st.floats(node.get("minimum", -10.0), node.get("maximum", 10.0), allow_nan=False)
        case "boolean":
            return st.booleans()
        case "null":
            return st.none()
    return JSON_VALUES


def schema_events() -> st.SearchStrategy[dict[str, Any]]:
    """Client events of every type, drawn from the protocol's JSON Schema."""
    return from_schema(DEFS["ClientEvent"])


def _events() -> st.SearchStrategy[Frame]:
    return schema_events().map(lambda event: Frame(json.dumps(event), refused=False, kind="schema"))


# --- hostile changes -------------------------------------------------------------------------------

_SURROGATE = '"\\ud800"'
MUTATIONS: dict[str, Any] = {
    "lone surrogate": _SURROGATE,
    "surrogate in a key": '{"\\udfff": 1}',
    "huge string": json.dumps("x" * 200_000),
    "1e400": "1e400",
    "10**5000": "1" * 5000,
    "-0": "-0.0",
    "NaN": "NaN",
    "deep nesting": "[" * 70 + "]" * 70,
    "100,000 keys": json.dumps({str(i): "" for i in range(100_000)}),
    "wrong type: list": "[1, 2]",
    "wrong type: object": '{"a": 1}',
    "wrong type: number": "3",
    "wrong type: null": "null",
    "wrong type: bool": "true",
    "empty string": '""',
    "empty array": "[]",
}
"""Raw JSON put at one place of an event."""
REFUSED_ANYWHERE = {"lone surrogate", "surrogate in a key", "1e400", "10**5000", "NaN", "deep nesting"}
"""Mutations the server refuses wherever they are, even in fields it ignores."""


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in an event a value may be put: each existing field or entry, and a new field of each object."""
    places: list[tuple[Any, ...]] = []
    if isinstance(value, dict):
        places.append((*path, "surprise"))
        for key, item in value.items():
            places += [(*path, key), *_places(item, (*path, key))]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            places += [(*path, index), *_places(item, (*path, index))]
    return places


@st.composite
def _mutated(draw: st.DrawFn) -> Frame:
    event = draw(schema_events())
    name = draw(st.sampled_from(sorted(MUTATIONS)))
    *parents, last = draw(st.sampled_from(_places(event)))
    container: Any = event
    for step in parents:
        container = container[step]
    container[last] = _RAW
    data = json.dumps(event).replace(json.dumps(_RAW), MUTATIONS[name], 1)
    return Frame(data, refused=name in REFUSED_ANYWHERE, kind=f"mutated: {name}")


def mutated_events() -> st.SearchStrategy[Frame]:
    """Schema events with one hostile change at a random place."""
    return _mutated()


# --- frames no event can be ------------------------------------------------------------------------

_BAD_TEXT = {
    "JSON 1,000 deep": "[" * 1000 + "]" * 1000,
    "objects 100,000 deep": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "not JSON": '{"type": "response.create",',
    "NaN": '{"type": "session.update", "session": {"temperature": NaN}}',
    "1e400": '{"type": "session.update", "session": {"temperature": 1e400}}',
    "10**5000": '{"type": "conversation.item.truncate", "item_id": "a", "content_index": 0, "audio_end_ms": '
    + "1" * 5000
    + "}",
    "a lone surrogate type": '{"type": "\\ud800"}',
    "an array": '[{"type": "response.create"}]',
    "a string": '"response.create"',
    "no type": '{"event_id": "e"}',
    "an unknown type": '{"type": "response.frobnicate"}',
    "a numeric type": '{"type": 7}',
}


def bad_frames() -> st.SearchStrategy[Frame]:
    """Frames every one of which must be refused with one `error`."""
    fixed = st.sampled_from(sorted(_BAD_TEXT.items())).map(lambda pair: Frame(pair[1], refused=True, kind=pair[0]))
    garbage = st.binary(max_size=64).map(lambda data: Frame(data, refused=True, kind="binary garbage"))
    junk = st.text(max_size=32).filter(lambda text: not _is_event(text))
    text = junk.map(lambda data: Frame(data, refused=True, kind="random text"))
    return fixed | garbage | text


def _is_event(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def hostile_frames() -> st.SearchStrategy[Frame]:
    """Any of the three kinds."""
    return _events() | mutated_events() | bad_frames()
