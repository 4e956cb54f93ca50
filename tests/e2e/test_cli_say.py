"""`aural say` against the real runtime: a file's reply cut by the token cap is said as such, and `--mic` streams a
device (here a stand-in for sounddevice that plays examples/sample.wav in 20 ms blocks) and prints the reply that
the server's voice activity detection asks for."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
import types
from typing import Any

import pytest

from aural.cli import mic
from aural.cli.main import main
from aural.sdk import WIRE_RATE, connect

from .conftest import Endpoint

pytestmark = pytest.mark.model


async def test_a_reply_stopped_by_the_token_cap_is_said_as_such(
    server: Endpoint, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["say", "examples/sample.wav", "--url", server.ws_url(), "--max-output-tokens", "3"]
    assert await asyncio.to_thread(main, argv) == 0
    out, err = capsys.readouterr()
    assert out.strip(), "the reply's text"
    [line] = err.splitlines()
    assert line.startswith("[stopped at the token limit (max_output_tokens=3): ") and "3 output tokens" in line


class _Device:
    """sounddevice's `RawInputStream` as the microphone's driver calls it: blocks of PCM16 on a thread of its own."""

    def __init__(self, pcm: bytes) -> None:
        self.pcm = pcm
        self.opened: dict[str, Any] = {}

    def RawInputStream(self, **options: Any) -> _Device:
        self.opened = options
        return self

    def __enter__(self) -> None:
        block = 2 * self.opened["blocksize"]
        callback = self.opened["callback"]

        def play() -> None:
            for start in range(0, len(self.pcm), block):
                callback(self.pcm[start : start + block], block // 2, None, None)

        threading.Thread(target=play, daemon=True).start()

    def __exit__(self, *exc: object) -> None:
        pass


async def test_mic_streams_the_device_and_prints_the_reply_server_vad_asks_for(
    server: Endpoint, speech_pcm: bytes, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    device = _Device(speech_pcm + bytes(2 * WIRE_RATE))  # the utterance, then a second of silence
    fake = types.SimpleNamespace(
        RawInputStream=device.RawInputStream,
        PortAudioError=OSError,
        query_devices=lambda kind: {"name": "test microphone"},
    )
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    microphone = mic.Microphone.default()
    args = argparse.Namespace(instructions=None, max_output_tokens=4)
    said = ""
    async with connect(server.ws_url()) as conn:
        conversing = asyncio.create_task(mic.converse(conn, microphone, args))
        for _ in range(600):  # until the reply's outcome is printed, a bounded number of times
            await asyncio.sleep(0.05)
            out, err = capsys.readouterr()
            said += out + err
            if "output tokens]" in said:
                break
        conversing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await conversing
    assert device.opened["samplerate"] == WIRE_RATE and device.opened["dtype"] == "int16"
    assert "[listening on test microphone" in said and "[hearing you]" in said and "aural: " in said
    assert "[stopped at the token limit (max_output_tokens=4): " in said
