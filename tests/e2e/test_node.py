"""The Node examples (examples/node) against the real runtime: the raw `ws` client over ws://, the official
`openai` npm package's `OpenAIRealtimeWS` over wss:// with the development CA of `--tls-self-signed`.

Each example runs with `--trace`, which writes every server event it received on stderr: each must be valid
for openai's own server event types, and the reply it printed must be exactly the streamed deltas. Without
`node` (or without `make js`) the tests are skipped, and fail when AURAL_REQUIRE_JS=1.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from aural.runtime.server.access import Access
from aural.runtime.server.dev_tls import DevCertificates
from tests.support.client import Event, Turn, assert_consistent, validate_openai
from tests.support.node import node_for

from .conftest import MODEL, SAMPLE_WAV, Endpoint

pytestmark = pytest.mark.model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "node"
KEY = "sk-aural-node"


@pytest.fixture(scope="module")
def node() -> str:
    """The `node` executable, with the examples' packages installed; skipped without, failed if required."""
    return node_for(EXAMPLES)


async def run_node(node: str, *args: str, trust: Path | None = None) -> tuple[int, str, list[str]]:
    """Run an example; returns its exit status, its stdout and its stderr's lines. `trust`: a CA for Node to
    trust, as NODE_EXTRA_CA_CERTS."""
    env = {key: value for key, value in os.environ.items() if key != "NODE_EXTRA_CA_CERTS"}
    if trust is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(trust)
    process = await asyncio.create_subprocess_exec(
        node, *args, cwd=EXAMPLES, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)  # a guard against hangs only
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode().splitlines()


def check_streamed_reply(stdout: str, trace: list[str]) -> list[Event]:
    """Every traced event valid for openai's types with an id of its own, one response streamed as deltas
    that add up to its text, and the example's stdout exactly that text then the status; returns the events."""
    for line in trace:
        validate_openai(line)
    events = [json.loads(line) for line in trace]
    assert len({event["event_id"] for event in events}) == len(events)
    types = [event["type"] for event in events]
    assert types[:2] == ["session.created", "session.updated"]
    turn = Turn(events[types.index("response.created") : types.index("response.done") + 1])
    assert_consistent(turn)
    assert len(turn.of_type("response.output_text.delta")) > 1, "the reply streamed"
    assert stdout == f"{turn.streamed_text}\n[{turn.response['status']}]\n"
    return events


def check_spoken_turn(events: list[Event]) -> None:
    """The example sent the WAV file (16 kHz) as GA's 24 kHz PCM16 and the model heard the audio it streamed."""
    assert events[1]["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    types = [event["type"] for event in events]
    committed = events[types.index("input_audio_buffer.committed")]
    added = events[types.index("conversation.item.added")]
    assert added["item"]["id"] == committed["item_id"] and added["item"]["content"][0]["type"] == "input_audio"
    done = events[types.index("response.done")]
    assert done["response"]["usage"]["input_token_details"]["audio_tokens"] > 0


async def test_the_ws_client_streams_a_wav_file_and_prints_the_reply(node: str, server: Endpoint) -> None:
    status, stdout, trace = await run_node(
        node, "ws_client.mjs", str(SAMPLE_WAV), "--url", server.realtime_url, "--max-tokens", "32", "--trace"
    )
    assert status == 0, trace
    check_spoken_turn(check_streamed_reply(stdout, trace))


@pytest.mark.app(access=Access(keys=(KEY,)))
async def test_the_ws_client_sends_its_key_and_a_wrong_one_is_refused(node: str, server: Endpoint) -> None:
    args = ["ws_client.mjs", str(SAMPLE_WAV), "--url", server.realtime_url, "--max-tokens", "4"]
    status, stdout, errors = await run_node(node, *args, "--api-key", KEY)
    assert status == 0 and stdout.endswith(("\n[completed]\n", "\n[incomplete]\n")), errors
    status, stdout, errors = await run_node(node, *args, "--api-key", "sk-wrong")
    assert (status, stdout) == (1, "")
    assert errors == [f"cannot talk to {server.realtime_url}: Unexpected server response: 401"]


async def test_the_ws_client_names_a_file_it_cannot_send_in_one_line(node: str, tmp_path: Path) -> None:
    not_wav = tmp_path / "notes.txt"
    not_wav.write_text("hello")
    status, stdout, errors = await run_node(node, "ws_client.mjs", str(not_wav))
    assert (status, stdout, errors) == (2, "", [f"{not_wav} is not a WAV file"])


@pytest.mark.parametrize("turn", [["--text", "Hello from Node."], [str(SAMPLE_WAV)]], ids=["text", "audio"])
async def test_the_openai_client_over_wss_trusting_the_development_ca(
    node: str, dev_wss: tuple[int, DevCertificates], turn: list[str]
) -> None:
    port, files = dev_wss
    base_url = f"https://127.0.0.1:{port}/v1"
    args = ["openai_client.mjs", *turn, "--base-url", base_url, "--model", MODEL, "--max-tokens", "32", "--trace"]
    status, stdout, trace = await run_node(node, *args, trust=files.ca)
    assert status == 0, trace
    events = check_streamed_reply(stdout, trace)
    if turn[0] == "--text":
        [user] = [event["item"] for event in events if event["type"] == "conversation.item.added"][:1]
        assert user["content"] == [{"type": "input_text", "text": "Hello from Node."}]
    else:
        check_spoken_turn(events)


async def test_the_openai_client_refuses_the_runtime_when_node_does_not_trust_the_ca(
    node: str, dev_wss: tuple[int, DevCertificates]
) -> None:
    port, _ = dev_wss
    status, stdout, _ = await run_node(
        node, "openai_client.mjs", "--text", "Hi", "--base-url", f"https://127.0.0.1:{port}/v1"
    )
    assert status == 1 and "error: unable to verify the first certificate" in stdout
