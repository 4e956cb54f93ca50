"""`aural serve --ray` as a user runs it: a local Ray cluster, `aural say` through its proxy, Ctrl-C; and the one line
it says when Ray is not installed."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest

from tests.support.cli import ROOT, one_line, run_python

SAMPLE_WAV = ROOT / "examples" / "sample.wav"


def test_without_ray_the_flag_says_how_to_install_it() -> None:
    argv = ["serve", "--ray", "--model", "tiny"]
    result = run_python(
        f"import sys; sys.modules['ray'] = None; from aural.cli.main import main; sys.exit(main({argv!r}))"
    )
    assert result.returncode == 2
    assert one_line(result.stderr) == "aural serve: --ray needs Ray Serve (ray): pip install 'aural[ray]'"


@pytest.mark.model
@pytest.mark.ray
def test_serve_ray_answers_say_and_stops_on_ctrl_c() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "aural.cli.main", "serve", "--ray", "--port", str(port), "--log-format", "json",
               "--kv-budget", "64MiB"]  # fmt: skip
    with subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        try:
            printed = []
            for line in process.stderr:
                if line.startswith("{") and json.loads(line).get("event") == "serving":
                    break
                printed.append(line)
            else:
                pytest.fail("aural serve --ray ended before serving:\n" + "".join(printed[-40:]))
            said = subprocess.run(
                [sys.executable, "-m", "aural.cli.main", "say", str(SAMPLE_WAV), "--url",
                 f"ws://127.0.0.1:{port}/v1/realtime", "--max-output-tokens", "8"],
                cwd=ROOT, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=120)
    assert said.returncode == 0, said.stderr
    assert said.stdout.strip(), "a reply was streamed"
    assert process.returncode == 0
