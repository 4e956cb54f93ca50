"""The language-neutral JSON Schema of every event, generated from the classes.

`python -m aural.protocols.schema` rewrites `schema.json` beside this file; a test fails when the
file drifts from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from .client_events import ClientEvent
from .server_events import ServerEvent

SCHEMA_PATH = Path(__file__).with_name("schema.json")


def build_schema() -> dict[str, Any]:
    """One JSON Schema (draft 2020-12) whose `$defs` hold `ClientEvent`, `ServerEvent` and their parts."""
    defs: dict[str, Any] = {}
    adapters: dict[str, TypeAdapter[Any]] = {
        "ClientEvent": TypeAdapter(ClientEvent),
        "ServerEvent": TypeAdapter(ServerEvent),
    }
    for name, adapter in adapters.items():
        schema = adapter.json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Aural realtime protocol (OpenAI Realtime GA events and Aural extensions)",
        "anyOf": [{"$ref": "#/$defs/ClientEvent"}, {"$ref": "#/$defs/ServerEvent"}],
        "$defs": dict(sorted(defs.items())),
    }


def render_schema() -> str:
    """The schema as the exact text kept in `schema.json`."""
    return json.dumps(build_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    SCHEMA_PATH.write_text(render_schema(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
