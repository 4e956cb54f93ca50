"""`aural serve`'s preflight: every argument, file, port and TLS problem is one line naming the thing, with status 2,
before the model loads; a hub id is looked up once, with a short timeout, and falls back on the cache."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import NoReturn

import pytest
from huggingface_hub import constants

from aural.cli import models
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from tests.support.cli import refused

SAMPLE_WAV = Path(__file__).resolve().parents[2] / "examples" / "sample.wav"


@pytest.fixture(autouse=True)
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every refusal here must come before the model loads."""

    def load(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("the model loaded")

    monkeypatch.setattr(TransformersEngine, "load", load)
    monkeypatch.delenv("AURAL_API_KEYS", raising=False)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--model", "/nonexistent"], "--model /nonexistent: no such folder"),
        (["--model", "./no/such/checkpoint"], "--model ./no/such/checkpoint: no such folder"),
        (
            ["--model", "tinny"],
            "--model tinny is neither a preset (tiny, medium, 7b-random), a local folder nor a hub id",
        ),
        (["--model", str(SAMPLE_WAV)], f"--model {SAMPLE_WAV} is a file"),
        (["--port", "99999"], "argument --port: '99999' is not a port (0 to 65535)"),
        (["--log-level", "verbose"], "argument --log-level: invalid choice: 'verbose'"),
        (["--tls-key", "key.pem"], "--tls-key needs --tls-cert"),
        (["--tls-cert", "/no/cert.pem", "--tls-key", str(SAMPLE_WAV)], "--tls-cert /no/cert.pem: No such file"),
        (["--tls-cert", str(SAMPLE_WAV), "--tls-key", "/no/key.pem"], "--tls-key /no/key.pem: No such file"),
        (["--tls-cert", str(SAMPLE_WAV), "--tls-key", str(SAMPLE_WAV)], f"--tls-cert {SAMPLE_WAV} and --tls-key"),
        (["--api-key-file", "/no/keys"], "--api-key-file /no/keys: No such file"),
        (
            ["--host", "no.such.host.invalid", "--allow-unauthenticated", "--log-level", "error"],
            "--host no.such.host.invalid: ",
        ),
    ],
)
def test_a_bad_argument_is_one_line_naming_it(capsys: pytest.CaptureFixture[str], argv: list[str], line: str) -> None:
    said = refused(capsys, "serve", *argv)
    assert said.startswith("aural serve: ") and line in said


def test_a_folder_without_a_checkpoint_is_told_as_such(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, "serve", "--model", str(tmp_path))
    assert line == f"aural serve: --model {tmp_path}: no config.json in this folder, so it holds no checkpoint"


def test_a_busy_port_is_found_before_the_model_loads(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = refused(capsys, "serve", "--port", str(port))
    assert (
        line == f"aural serve: --port {port} is in use on 127.0.0.1 (another server?): stop it or pick another --port"
    )


# --- the hub ---------------------------------------------------------------------------------------


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache, and the offline switch as it was after the test."""
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path


def _cache(root: Path, repo: str) -> None:
    """`repo`'s config.json in the hub's cache layout."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    (folder / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (folder / "snapshots" / ("0" * 40) / "config.json").write_text("{}")


def test_an_unreachable_hub_fails_at_once_with_a_hint(
    hub_cache: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    line = refused(capsys, "serve", "--model", "Qwen/Qwen2-Audio-7B-Instruct")
    assert line.startswith(
        "aural serve: --model Qwen/Qwen2-Audio-7B-Instruct: cannot reach the hub at http://127.0.0.1:"
    )
    assert "HF_HUB_OFFLINE=1" in line


def test_an_unreachable_hub_loads_a_cached_checkpoint_offline(
    hub_cache: Path, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port}")
    _cache(hub_cache, "org/cached")
    models.check_model("org/cached")
    assert constants.HF_HUB_OFFLINE is True


def test_offline_mode_needs_the_checkpoint_in_the_cache(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://hub.invalid")  # never asked: a lookup would fail differently
    line = refused(capsys, "serve", "--model", "org/absent")
    assert (
        line.startswith("aural serve: --model org/absent is not in the hub cache") and "HF_HUB_OFFLINE is set" in line
    )
    _cache(hub_cache, "org/present")
    models.check_model("org/present")


class _NoSuchRepo(BaseHTTPRequestHandler):
    """The hub's answer for a repository it does not have."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def hub_without_repos() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _NoSuchRepo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_hub_id_the_hub_does_not_know_is_one_line(
    hub_cache: Path, hub_without_repos: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", hub_without_repos)
    line = refused(capsys, "serve", "--model", "org/typo")
    assert line == "aural serve: --model org/typo: no such model on the hub (a private one needs hf auth login)"
