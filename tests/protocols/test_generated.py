"""The files generated from the event classes (`make schema`): up to date, complete, and accepted by the
official AsyncAPI parser (`tests/js/check_asyncapi.mjs`; ajv's strict check of the schema runs in
tests/runtime/server/test_schema_js.py, on the events of a real conversation)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from aural.protocols import CLIENT_EVENTS, SERVER_EVENTS, ErrorCode
from aural.protocols.asyncapi import ASYNCAPI_PATH
from aural.protocols.extensions import EXTENSIONS
from aural.protocols.generate import GENERATED
from aural.protocols.reference import REFERENCE_PATH
from aural.protocols.sequences import SEQUENCES
from tests.support.node import JS_DIR, run_node

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(("path", "render"), GENERATED.items(), ids=[path.name for path in GENERATED])
def test_the_generated_file_is_what_the_code_generates(path: Path, render: Callable[[], str]) -> None:
    assert path.read_text(encoding="utf-8") == render(), "run: make schema (python -m aural.protocols.generate)"


def test_asyncapi_receives_every_client_event_and_sends_every_server_event() -> None:
    document = json.loads(ASYNCAPI_PATH.read_text(encoding="utf-8"))
    messages = document["components"]["messages"]
    by_action = {}
    for operation in document["operations"].values():
        names = [messages[ref["$ref"].rsplit("/", 1)[-1]]["name"] for ref in operation["messages"]]
        by_action[operation["action"]] = {name for name in names if name != "BinaryAudioFrame"}
    assert by_action == {"receive": set(CLIENT_EVENTS), "send": set(SERVER_EVENTS)}
    marked = {message["name"] for message in messages.values() if message.get("x-aural-extension")}
    assert marked == {name for name in [*CLIENT_EVENTS, *SERVER_EVENTS] if name.startswith("aural.")} | {
        "BinaryAudioFrame"
    }


def test_the_official_asyncapi_parser_accepts_the_document() -> None:
    assert "valid" in run_node("check_asyncapi.mjs")


def test_the_reference_covers_every_event_sequence_extension_and_error_code() -> None:
    reference = REFERENCE_PATH.read_text(encoding="utf-8")
    headings = {line.removeprefix("### ").strip("`") for line in reference.splitlines() if line.startswith("### ")}
    assert set(CLIENT_EVENTS) | set(SERVER_EVENTS) <= headings
    assert {sequence.title for sequence in SEQUENCES} <= headings
    assert all(f"| `{extension.name}` |" in reference for extension in EXTENSIONS)
    assert all(f"| `{code.value}` |" in reference for code in ErrorCode)


def test_the_readmes_javascript_runs_as_written(tmp_path: Path) -> None:
    [block] = re.findall(r"```js\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    script = tmp_path / "readme.mjs"
    script.write_text(block, encoding="utf-8")
    (tmp_path / "node_modules").symlink_to(JS_DIR / "node_modules")  # where `npm install ajv` would put it
    run_node(script, cwd=ROOT)
    script.write_text(block.replace('"event_1"', "1"), encoding="utf-8")
    with pytest.raises(AssertionError, match="event_id must be string"):
        run_node(script, cwd=ROOT)
