"""`aural serve`: `--tools` loaded through the SDK and checked by the runtime before the model loads."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import pytest

from aural.cli import serve as serve_module
from aural.sdk.tools import DEFAULT_TIMEOUT


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_module.add_arguments(parser)
    return parser.parse_args(["--model", "/no/such/checkpoint", *argv])


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_module, "configure_logging", lambda *options: None)
    monkeypatch.setattr(sys, "path", list(sys.path))  # `serve` adds the current folder


def test_serve_refuses_a_bad_spec_before_it_loads_the_model() -> None:
    args = _args("--tools", "examples.server_tools:NOPE")
    assert args.tool_timeout == DEFAULT_TIMEOUT
    with pytest.raises(SystemExit, match=r"^aural serve: --tools examples.server_tools:NOPE: .* no attribute 'NOPE'"):
        serve_module.serve(args)


@pytest.mark.parametrize(
    ("module", "annotation", "problem"),
    [
        # pydantic cannot validate it: the SDK refuses it.
        ("lookaround", 'Field(pattern=r"(?=a)b")', "--tools lookaround:lookup: .* cannot be a tool: .*look-around"),
        # Valid JSON Schema, but the runtime's decoder cannot enforce it: the runtime refuses it.
        ("own_format", 'Field(json_schema_extra={"format": "mine"})', "--tools: .*cannot be enforced while decoding"),
    ],
)
def test_serve_refuses_a_schema_that_cannot_be_validated_or_enforced_before_it_loads_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, annotation: str, problem: str
) -> None:
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""
        from typing import Annotated
        from pydantic import Field

        def lookup(code: Annotated[str, {annotation}]) -> str:
            return code
    """))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=rf"(?s)^aural serve: {problem}"):
        serve_module.serve(_args("--tools", f"{module}:lookup"))


def test_the_loaded_tools_are_the_runtimes_and_a_zero_timeout_is_none() -> None:
    tools = serve_module.server_tools(["examples.server_tools:TOOLS"], None)
    assert [tool.name for tool in tools.definitions] == ["get_time", "lookup_order"]
    assert tools.timeout is None and _args("--tool-timeout", "0").tool_timeout == 0


@pytest.mark.parametrize(
    ("given", "size"),
    [("40GiB", 40 * 2**30), ("512M", 512 * 2**20), ("1.5g", 3 * 2**29), ("1000000", 1_000_000), ("2 GB", 2 * 2**30)],
)
def test_kv_budget_takes_sizes_with_binary_units(given: str, size: int) -> None:
    assert _args("--kv-budget", given).kv_budget == size


@pytest.mark.parametrize("given", ["lots", "-1G", "12", "3 parsecs"])
def test_a_bad_kv_budget_is_one_clear_line(given: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _args("--kv-budget", given)
    assert "--kv-budget" in capsys.readouterr().err


def test_the_fleet_options_default_to_waiting_and_no_idle_offload() -> None:
    args = _args()
    assert (args.kv_budget, args.on_full, args.idle_offload, args.no_cuda_graphs) == (None, "wait", None, False)


def test_the_operations_options_default_to_kubernetes_friendly_limits() -> None:
    args = _args()
    assert (args.drain_timeout, args.log_format) == (25.0, None)
    assert (args.first_event_timeout, args.idle_timeout, args.heartbeat) == (30.0, 600.0, 30.0)
    assert _args("--log-format", "json", "--idle-timeout", "0").idle_timeout == 0
