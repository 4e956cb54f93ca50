"""`aural` as a process: what it imports (`--help` and `say` never torch), the runtime extra missing, Ctrl-C, and the
"serving" line written once the socket listens."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import ROOT, one_line, run_python

SAMPLE_WAV = ROOT / "examples" / "sample.wav"

_IMPORTS = """
import json, sys
from aural.cli.main import main

def run(*argv):
    try:
        main(list(argv))
    except SystemExit:
        pass
    return sorted(name for name in ("torch", "transformers", "aiohttp", "aural.runtime") if name in sys.modules)

print(json.dumps({
    "help": run("--help"),
    "say": run("say", "--help") + run("say", "/no/such.wav"),
    "serve preflight": run("serve", "--model", "/no/such/checkpoint"),
}))
"""


def test_help_and_say_do_not_import_the_runtime_and_serve_checks_before_torch() -> None:
    result = run_python(_IMPORTS)
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded["help"] == [] and loaded["say"] == []
    assert "torch" not in loaded["serve preflight"] and "transformers" not in loaded["serve preflight"]
    assert "aural serve: --model /no/such/checkpoint: no such folder" in result.stderr


@pytest.mark.parametrize(
    ("missing", "argv"),
    [
        ("aiohttp", ["serve", "--model", "tiny", "--port", "0"]),  # `serve`'s options cannot even be registered
        ("torch", ["serve", "--model", "tiny", "--port", "0"]),  # every check passes, then the model's modules fail
    ],
)
def test_without_the_runtime_serve_says_how_to_install_it(missing: str, argv: list[str]) -> None:
    script = f"import sys; sys.modules[{missing!r}] = None; from aural.cli.main import main; sys.exit(main({argv!r}))"
    result = run_python(script)
    line = one_line(result.stderr)
    assert result.returncode == 2
    assert line == f"aural serve: the runtime is not installed (no module {missing!r}): pip install 'aural[runtime]'"


def test_ctrl_c_ends_say_in_one_line() -> None:
    with socket.socket() as listener:  # accepts the connection and never answers the handshake
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        command = [sys.executable, "-m", "aural.cli.main", "say", str(SAMPLE_WAV)]
        with subprocess.Popen(
            [*command, "--url", f"ws://127.0.0.1:{port}/v1/realtime"], cwd=ROOT, stderr=subprocess.PIPE, text=True
        ) as process:
            listener.settimeout(60)
            connection, _ = listener.accept()  # `say` is past its imports, inside its event loop
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
            connection.close()
    assert process.returncode == 130
    assert one_line(stderr) == "aural say: interrupted"


@pytest.mark.model
def test_serving_is_said_once_the_socket_listens(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "aural.cli.main", "serve", "--port", "0", "--log-format", "json"]
    with subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True) as process:
        assert process.stderr is not None
        try:
            for line in process.stderr:
                record = json.loads(line)
                if record["event"] == "serving":
                    break
            port = int(record["url"].rsplit(":", 1)[1].split("/")[0])
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                pass  # listening already: the line came after the socket, not before
        finally:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=60)
    assert process.returncode == 0
