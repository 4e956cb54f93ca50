"""The examples, and the README's Python blocks, run as a user runs them, against the real runtime."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.scripts import ROOT, SAMPLE, run_script

from .conftest import Endpoint

pytestmark = pytest.mark.model

README_BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
README_URL = "ws://127.0.0.1:8000/v1/realtime"


@pytest.mark.parametrize("with_text", [False, True])
async def test_voice_chat(server: Endpoint, with_text: bool) -> None:
    extra = ["--text", "What is said?"] if with_text else []
    output = await run_script(
        str(ROOT / "examples/voice_chat.py"), SAMPLE, SAMPLE, "--url", server.realtime_url, *extra
    )
    assert output.count("turn ") == 2
    reused = [int(line.split("(")[1].split()[0]) for line in output.splitlines() if "reused" in line]
    assert reused[0] == 0 < reused[1]


async def test_openai_client(server: Endpoint) -> None:
    output = await run_script(
        str(ROOT / "examples/openai_client.py"), SAMPLE, "--base-url", f"ws://127.0.0.1:{server.port}/v1"
    )
    assert output.rstrip().endswith("[incomplete]") or output.rstrip().endswith("[completed]")
    assert "error" not in output


async def test_tools(server: Endpoint) -> None:
    question = "Is it warm in Lisbon?"
    output = await run_script(
        str(ROOT / "examples/tools.py"), question, "--call", "get_weather", "--url", server.realtime_url
    )
    [called] = [line for line in output.splitlines() if line.startswith("  called ")]
    assert called.startswith("  called get_weather({") and '-> {"city"' in called, "the tool ran and answered"
    assert output.rstrip().endswith(("[completed]", "[incomplete]"))


async def test_voice_bot(server: Endpoint) -> None:
    output = await run_script(
        str(ROOT / "examples/voice_bot.py"), SAMPLE, "--fast", "--linger", "0.5", "--url", server.realtime_url
    )
    assert_the_bot_conversed(output)


async def test_embedded_voice_bot() -> None:
    """The same bot with the tiny model in its own process: no server."""
    output = await run_script(str(ROOT / "examples/embedded.py"), SAMPLE, "--fast", "--linger", "0.5")
    assert_the_bot_conversed(output)


def assert_the_bot_conversed(output: str) -> None:
    """One turn found by the server's VAD, transcribed and answered, in `voice_bot.py`'s output."""
    lines = output.splitlines()
    assert [line.split(" at ")[0] for line in lines if line.startswith("[speech")] == [
        "[speech started",
        "[speech stopped",
    ]
    assert sum(line.startswith("you: ") for line in lines) == 1, "the turn was transcribed"
    reply = [line.removeprefix("bot: ") for line in lines if line.startswith("bot: ")]
    assert reply and reply[0], "the reply's text was printed (on more lines when the transcript came meanwhile)"
    assert output.rstrip().endswith(("[completed]", "[incomplete]")), "the reply ended before the bot did"
    assert "[error" not in output


@pytest.mark.parametrize("block", README_BLOCKS, ids=[f"block{n}" for n in range(len(README_BLOCKS))])
async def test_the_readmes_python_blocks_run_as_written(server: Endpoint, tmp_path: Path, block: str) -> None:
    embedded = "aural.runtime.local(" in block  # the runtime in the block's own process: no server to reach
    assert embedded or README_URL in block, "each block talks to the runtime as `aural serve` starts it"
    script = tmp_path / "block.py"
    script.write_text(block.replace(README_URL, server.realtime_url))
    await run_script(str(script))
