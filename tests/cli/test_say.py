"""`aural say`: a file that is not audio, a missing microphone and how a reply ended, each told in one line.
(Talking to a real runtime, the microphone's included: `tests/e2e/test_cli_say.py`.)"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from aural.cli.replies import outcome
from aural.protocols.models import Response, StatusDetails, Usage
from tests.support.cli import refused

UNUSED_URL = "ws://127.0.0.1:9/v1/realtime"  # never reached: every problem here comes before connecting


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"just some text\n", "not an audio file"), (None, "no such file")],
)
def test_a_file_that_is_not_audio_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, problem: str
) -> None:
    path = tmp_path / "notes.mp3"
    if content is not None:
        path.write_bytes(content)
    line = refused(capsys, "say", str(path), "--url", UNUSED_URL, status=1)
    assert line.startswith(f"aural say: {path}: {problem}")


def _portaudio_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sounddevice installed, PortAudio not: its import raises OSError, as the real package's does."""
    (tmp_path / "sounddevice.py").write_text("raise OSError('PortAudio library not found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)


def _no_input_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sounddevice and PortAudio without any input device (a server, a container)."""

    class PortAudioError(Exception):
        pass

    def query_devices(kind: str) -> dict[str, object]:
        raise PortAudioError("Error querying device -1")

    fake = types.SimpleNamespace(PortAudioError=PortAudioError, query_devices=query_devices)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)


def _not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        (_not_installed, "needs the sounddevice package: pip install 'aural[mic]'"),
        (_portaudio_missing, "needs the PortAudio library (PortAudio library not found): apt install libportaudio2"),
        (_no_input_device, "no input device (Error querying device -1)"),
    ],
)
def test_a_missing_microphone_is_one_line_before_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], setup: object, problem: str
) -> None:
    setup(tmp_path, monkeypatch)  # type: ignore[operator]
    line = refused(capsys, "say", "--mic", "--url", UNUSED_URL, status=1)
    assert line.startswith(f"aural say: --mic: {problem}")


def test_mic_and_text_do_not_go_together(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "say", "--mic", "--text", "what is it?")
    assert line == "aural say: --text goes with a file, not with --mic"


def _response(status: str, reason: str | None) -> Response:
    details = StatusDetails(type=status, reason=reason) if reason else None  # type: ignore[arg-type]
    usage = Usage.model_validate(
        {"input_tokens": 125, "output_tokens": 64, "total_tokens": 189, "input_token_details": {"audio_tokens": 56}}
    )
    return Response(id="resp_1", status=status, status_details=details, max_output_tokens=64, usage=usage)  # type: ignore[arg-type]


def test_a_reply_cut_by_the_token_cap_is_said_as_such() -> None:
    used = "125 input tokens (56 audio), 64 output tokens"
    assert outcome(_response("incomplete", "max_output_tokens")) == (
        f"[stopped at the token limit (max_output_tokens=64): {used}]"
    )
    assert outcome(_response("completed", None)) == f"[completed: {used}]"
    assert outcome(_response("cancelled", "turn_detected")) == f"[cancelled (turn_detected): {used}]"
