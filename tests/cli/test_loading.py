"""Loading `aural serve`'s model: a progress display on a terminal and none in a log; a failure in one line."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
import transformers.utils.logging
from huggingface_hub.utils.tqdm import are_progress_bars_disabled, enable_progress_bars

from aural.cli import loading, serve
from tests.support.cli import one_line

pytestmark = pytest.mark.model


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    return parser.parse_args(["--device", "cpu", *argv])


def test_a_terminal_sees_the_load_counted_and_a_log_sees_nothing() -> None:
    terminal, log = _Terminal(), io.StringIO()
    with loading.progress("loading tiny", terminal, enabled=True):
        pass
    with loading.progress("loading tiny", log, enabled=False):
        pass
    assert "loading tiny: 00:00" in terminal.getvalue() and log.getvalue() == ""


def test_away_from_a_terminal_the_libraries_bars_are_off() -> None:
    enable_progress_bars()
    transformers.utils.logging.enable_progress_bar()
    log = io.StringIO()
    engine = loading.load_engine(_args("--kv-budget", "1MiB"), log)
    engine.shutdown()
    assert log.getvalue() == ""
    assert are_progress_bars_disabled() and not transformers.utils.logging.is_progress_bar_enabled()


def test_a_checkpoint_that_does_not_load_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(SystemExit) as exited:
        loading.load_engine(_args("--model", str(tmp_path)), io.StringIO())
    assert exited.value.code == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"aural serve: --model {tmp_path}: ") and "config.json" in line
