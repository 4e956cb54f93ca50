"""Running `aural` for the CLI tests: in this process through `main(argv)`, or as a process of its own (`python -m
aural.cli.main`, or a script that first breaks an import), and the one line a problem must come to."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aural.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def one_line(stderr: str) -> str:
    """The single line of `stderr`; fails on a traceback or on more than one line."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def refused(capsys: pytest.CaptureFixture[str], *argv: str, status: int = 2) -> str:
    """Run `aural *argv` in this process: it must end with `status` and one line on stderr, which is returned."""
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    assert code == status, capsys.readouterr()
    return one_line(capsys.readouterr().err)


def run_python(script: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `script` with this interpreter in the repository's root, its output captured."""
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
