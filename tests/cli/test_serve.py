"""`aural serve`: `--tools` loaded through the SDK and checked by the runtime, keys read and the bind policy
enforced, all before the model loads."""

from __future__ import annotations

import argparse
import asyncio
import sys
import textwrap
from pathlib import Path
from typing import NoReturn

import pytest
import structlog

from aural.cli import access as access_module
from aural.cli import serve as serve_module
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.store import Changes
from aural.sdk.tools import DEFAULT_TIMEOUT
from tests.support.redis import redis_server


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    serve_module.add_arguments(parser)
    return parser.parse_args(["--model", "tiny", *argv])


@pytest.fixture(autouse=True)
def _own_path(monkeypatch: pytest.MonkeyPatch) -> None:
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


# --- access ----------------------------------------------------------------------------------------


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal must come before the model loads."""

    def load(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("the model loaded")

    monkeypatch.setattr(TransformersEngine, "load", load)
    monkeypatch.delenv(access_module.KEYS_VARIABLE, raising=False)


def _refused(args: argparse.Namespace, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        serve_module.serve(args)
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    return line


@pytest.mark.usefixtures("no_model")
def test_without_keys_a_non_loopback_host_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    line = _refused(_args("--host", "0.0.0.0"), capsys)
    assert line.startswith("aural serve: --host 0.0.0.0 is not loopback") and "--allow-unauthenticated" in line


@pytest.mark.usefixtures("no_model")
@pytest.mark.parametrize(
    ("content", "problem"), [(None, "No such file"), ("# only a comment\n\n", "no key in it"), (b"\xff\xfe", "codec")]
)
def test_an_unusable_key_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "keys.txt"
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        path.write_bytes(content)
    line = _refused(_args("--api-key-file", str(path)), capsys)
    assert line.startswith(f"aural serve: --api-key-file {path}: ") and problem in line


@pytest.mark.usefixtures("no_model")
def test_keys_come_from_the_file_and_the_environment_and_only_their_count_is_logged(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# the team's keys\nsk-file-one\n\n  sk-file-two  \n")
    args = _args("--api-key-file", str(path), "--host", "0.0.0.0", "--max-sessions-per-key", "3")
    with structlog.testing.capture_logs() as logs:
        policy = access_module.access_policy(args, {access_module.KEYS_VARIABLE: "sk-env, sk-file-one,"})
    assert policy.keys == ("sk-env", "sk-file-one", "sk-file-two") and policy.max_sessions_per_key == 3
    assert logs == [{"event": "API keys required", "keys": 3, "log_level": "info"}]


@pytest.mark.usefixtures("no_model")
def test_allow_unauthenticated_serves_an_open_host_with_a_warning() -> None:
    args = _args("--host", "0.0.0.0", "--allow-unauthenticated", "--allowed-origins", "https://a.example, *")
    with structlog.testing.capture_logs() as logs:
        policy = access_module.access_policy(args, {})
    assert policy.keys == () and policy.allowed_origins == ("https://a.example", "*")
    [warning] = logs
    assert warning["log_level"] == "warning" and "anyone who can reach the port" in warning["event"]
    assert access_module.access_policy(_args(), {}).allowed_origins is None, "loopback needs no flag"


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                                ("0.0.0.0", False), ("", False), ("example.com", False)])  # fmt: skip
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert access_module.is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("given", "missing"), [(("--tls-key", "key.pem"), "--tls-cert"), (("--tls-cert", "cert.pem"), "--tls-key")]
)
def test_half_of_the_tls_options_is_refused_in_one_line_before_it_loads_the_model(
    given: tuple[str, str], missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_module.serve(_args(*given))
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(f"aural serve: {given[0]} needs {missing}")


@pytest.mark.parametrize("given", [("--tls-cert", "cert.pem"), ("--tls-key", "key.pem")])
def test_tls_self_signed_with_a_certificate_of_ones_own_is_refused_in_one_line(
    given: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_module.serve(_args("--tls-self-signed", str(tmp_path), *given))
    assert exited.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line == f"aural serve: --tls-self-signed makes its own certificate: drop {given[0]}"
    assert not list(tmp_path.iterdir()), "nothing written"


def test_a_dev_ca_folder_that_cannot_be_used_ends_serve_in_one_line_before_it_loads_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ca.pem").write_text("a certificate without its key")
    not_a_folder = tmp_path / "ca.pem"
    for folder, problem in ((tmp_path, "has one of ca.pem and ca-key.pem"), (not_a_folder, "File exists")):
        with pytest.raises(SystemExit) as ended:
            serve_module.serve(_args("--tls-self-signed", str(folder)))
        assert ended.value.code == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith("aural serve: --tls-self-signed: ") and problem in line


def test_the_limit_options_set_the_apps_limits(capsys: pytest.CaptureFixture[str]) -> None:
    limits = serve_module.limits(_args("--max-message-bytes", "1MiB", "--events-per-second", "20"))
    assert (limits.max_message_bytes, limits.events_per_second, limits.event_burst) == (2**20, 20.0, 40)
    assert limits.max_id_chars == 32, "the others keep their defaults"
    with pytest.raises(SystemExit):
        _args("--events-per-second", "0")
    assert "'0' is not a number above 0" in capsys.readouterr().err


def test_the_operations_options_default_to_kubernetes_friendly_limits() -> None:
    args = _args()
    assert (args.drain_timeout, args.log_format) == (25.0, None)
    assert (args.first_event_timeout, args.idle_timeout, args.heartbeat) == (30.0, 600.0, 30.0)
    assert _args("--log-format", "json", "--idle-timeout", "0").idle_timeout == 0


def test_a_store_that_does_not_answer_ends_serve_in_one_line_before_it_loads_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        serve_module.serve(_args("--store", f"unix://{tmp_path}/no-redis.sock"))
    assert ended.value.code == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("aural serve: --store: Redis did not answer: ") and "no-redis.sock" in line


async def test_a_store_that_answers_is_the_apps(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        store = await asyncio.to_thread(serve_module.conversation_store, url)  # it pings on a loop of its own
        assert store is not None
        await store.save("sess_1", Changes("writer_1", True, b"{}", takeover=True))
        await store.delete("sess_1", "writer_1")
        await store.close()
    assert serve_module.conversation_store(None) is None
