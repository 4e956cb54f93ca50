"""The language-neutral JSON Schema of every event, generated from the classes.

`python -m aural.protocols.generate` rewrites `schema.json` beside this file (with the other generated
files); a test fails when it drifts from the code.

The schema is plain JSON Schema 2020-12 that strict validators accept (ajv's strict mode): pydantic's
OpenAPI-style `discriminator` is dropped, and the field it names (`type`) is made required in every member
of the union instead, as the codec requires it. Client events are described as they may be sent (fields
with defaults are optional); server events as they are sent, so a field the server always writes (every
`event_id`, a response's `output`) is required. A shared part that differs between the two is in `$defs`
twice, as `Name-Input` (client side) and `Name-Output` (server side).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from .client_events import ClientEvent
from .server_events import ServerEvent

SCHEMA_PATH = Path(__file__).with_name("schema.json")


class _WireSchema(GenerateJsonSchema):
    """Pydantic's generator, told that the server omits only the fields whose value is None."""

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        default = field["schema"]
        if self.mode == "serialization" and field["type"] != "typed-dict-field" and default["type"] == "default":
            return "default_factory" in default or default.get("default") is not None
        return super().field_is_required(field, total)


def _drop_discriminators(node: Any, defs: dict[str, Any]) -> None:
    """Replace each OpenAPI `discriminator` (which strict validators refuse) by its field being required in
    every member of the `oneOf` it annotates; the members' `const`s keep the union exclusive."""
    if isinstance(node, list):
        for child in node:
            _drop_discriminators(child, defs)
    if not isinstance(node, dict):
        return
    if (discriminator := node.pop("discriminator", None)) is not None:
        name = discriminator["propertyName"]
        for member in node["oneOf"]:
            target = defs[member["$ref"].removeprefix("#/$defs/")]
            target["required"] = [name, *(field for field in target.get("required", []) if field != name)]
    for child in node.values():
        _drop_discriminators(child, defs)


def build_schema() -> dict[str, Any]:
    """One JSON Schema (draft 2020-12) whose `$defs` hold `ClientEvent`, `ServerEvent` and their parts."""
    schemas, top = TypeAdapter.json_schemas(
        [
            ("ClientEvent", "validation", TypeAdapter(ClientEvent)),
            ("ServerEvent", "serialization", TypeAdapter(ServerEvent)),
        ],
        ref_template="#/$defs/{model}",
        schema_generator=_WireSchema,
    )
    defs: dict[str, Any] = top["$defs"]
    for (name, _mode), schema in schemas.items():
        defs[name] = schema
    _drop_discriminators(defs, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Aural realtime protocol (OpenAI Realtime GA events and Aural extensions)",
        "anyOf": [{"$ref": "#/$defs/ClientEvent"}, {"$ref": "#/$defs/ServerEvent"}],
        "$defs": dict(sorted(defs.items())),
    }


def render_json(document: dict[str, Any]) -> str:
    """A generated JSON document as the exact text kept in the repository."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render_schema() -> str:
    """The schema as the exact text kept in `schema.json`."""
    return render_json(build_schema())
