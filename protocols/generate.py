"""`python -m aural.protocols.generate` (`make schema`): rewrite the files generated from the event classes.

`protocols/schema.json` (JSON Schema), `protocols/asyncapi.json` (AsyncAPI) and `docs/protocol.md` (the
reference); a test fails when any of them differs from what the code generates now. It runs in a checkout
(the editable install), where `docs/` sits beside `protocols/`; the two JSON files also ship in the package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .asyncapi import ASYNCAPI_PATH, render_asyncapi
from .reference import REFERENCE_PATH, render_reference
from .schema import SCHEMA_PATH, render_schema

GENERATED: dict[Path, Callable[[], str]] = {
    SCHEMA_PATH: render_schema,
    ASYNCAPI_PATH: render_asyncapi,
    REFERENCE_PATH: render_reference,
}
"""Each generated file and what writes its text."""


def main() -> None:
    for path, render in GENERATED.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(), encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
