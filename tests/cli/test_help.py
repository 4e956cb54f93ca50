"""`--help` shows each option's default, and the README's tables of options are the parsers' own."""

from __future__ import annotations

import argparse
import re

import pytest

from aural.cli import helptext, say, serve
from aural.cli.main import main
from tests.support.cli import ROOT


def _help(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines: compare words


def test_serve_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "serve")
    for option, default in [("--port PORT", "8000"), ("--model MODEL", "tiny"), ("--log-level", "info"),
                            ("--prefill-chunk TOKENS", "256"), ("--heartbeat SECONDS", "30"),
                            ("--kv-budget BYTES", "80% of the free device memory")]:  # fmt: skip
        assert re.search(rf"{re.escape(option)} .*?\(default: {re.escape(default)}", text), option
    assert "(default: None)" not in text and "(default: False)" not in text
    assert not re.search(r"\(default: [^)]*\) \(default:", text), "a default told twice"


def test_say_help_shows_the_defaults_and_the_microphone(capsys: pytest.CaptureFixture[str]) -> None:
    text = _help(capsys, "say")
    assert "--max-output-tokens MAX_OUTPUT_TOKENS the longest reply, in tokens (default: 64)" in text
    assert "(default: ws://127.0.0.1:8000/v1/realtime)" in text and "--mic" in text and "aural[mic]" in text


def _table(add_arguments: object) -> str:
    parser = argparse.ArgumentParser()
    add_arguments(parser)  # type: ignore[operator]
    return helptext.options_table(parser)


@pytest.mark.parametrize("command", [serve, say], ids=["serve", "say"])
def test_the_readme_tables_are_the_parsers(command: object) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Command line") : readme.index("## The protocol")]
    table = _table(command.add_arguments)  # type: ignore[attr-defined]
    assert table in section, f"regenerate the README's tables: python -m aural.cli.helptext\n{table}"
