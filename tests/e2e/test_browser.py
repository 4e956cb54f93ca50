"""The browser demo (`/`) in headless Chromium against the real runtime and the tiny model.

Debian's chromium (`.ci/run` installs it) is driven by playwright, which downloads no browser of its own. The page
hears espeak-ng speech through Chromium's fake microphone (`--use-file-for-fake-audio-capture`: the WAV plays once,
then silence). Without chromium or playwright these tests are skipped, saying which is missing; with
AURAL_REQUIRE_BROWSER=1 (CI) they fail instead. AURAL_SCREENSHOTS=DIR keeps the voice test's screenshot there as
demo.png (the README's docs/demo.png), else it goes to the test's temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aural.runtime.server.access import Access
from tests.support.speech import utterance

from .conftest import Endpoint

CHROMIUM = Path("/usr/bin/chromium")


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (Debian: apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "playwright is missing (pip install -e '.[dev]')"
    return None


if (MISSING := _missing()) is not None:
    if os.environ.get("AURAL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"AURAL_REQUIRE_BROWSER=1, but {MISSING}", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect  # noqa: E402

pytestmark = pytest.mark.model

KEY = "sk-browser-demo"
STORY = "Tell me a long story about the sea."
"""The tiny model's greedy reply to this in the page's session runs on for thousands of tokens: still running when
the speech comes."""
CALL_TOKENS = 64  # the tiny model's whole get_time call (62 tokens, all forced by the grammar), and no more
WAIT_MS = 30_000  # a bound on each wait for the page, not a measurement


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Half a second of silence, a question, two seconds of silence: 16-bit mono PCM WAV, as Chromium reads it."""
    speech = utterance(["What time is it in Paris?"], [], lead=0.5, tail=2.0)
    path = tmp_path_factory.mktemp("browser") / "speech.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(speech.rate)
        wav.writeframes(speech.pcm16())
    return path


@pytest.fixture
async def browser(speech_wav: Path) -> AsyncIterator[Browser]:
    args = [
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--use-fake-ui-for-media-stream",  # the microphone is allowed without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={speech_wav}%noloop",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ]
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, server: Endpoint) -> AsyncIterator[Page]:
    """The demo page, served by the test's runtime; a script error, a file it cannot load or a breach of its content
    security policy fails the test (a refused websocket is one of the keyboard test's steps)."""
    opened = await browser.new_page(viewport={"width": 900, "height": 640})
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "WebSocket" not in message.text:
            errors.append(message.text)

    opened.on("console", console)
    await opened.goto(server.http_url("/"))
    yield opened
    await opened.close()  # the page's socket closes with a close frame: its conversation ends, none waits to resume
    assert errors == []


async def connect(page: Page, max_tokens: str = "") -> None:
    await page.fill("#max-tokens", max_tokens)
    await page.click("#connect")
    await expect(page.locator("#status")).to_contain_text("Connected", timeout=WAIT_MS)


async def assert_replied(page: Page, status: str) -> None:
    """The last reply ended with `status` and the reply area shows the text of its item."""
    reply = page.locator('#items li[data-role="assistant"]').last
    await expect(reply).to_have_attribute("data-status", status, timeout=WAIT_MS)
    text = await reply.locator(".text").inner_text()
    assert text.strip() != ""
    assert await page.locator("#reply").inner_text() == text
    await expect(page.locator("#reply")).to_have_attribute("aria-busy", "false")


async def test_a_spoken_turn_interrupts_the_reply_and_is_answered(page: Page, tmp_path: Path) -> None:
    await connect(page)
    await page.fill("#text", STORY)
    await page.click("#send")
    await expect(page.locator("#turn")).to_have_attribute("data-state", "replying", timeout=WAIT_MS)
    await page.fill("#max-tokens", "8")  # for the next reply
    await page.click("#mic")
    await expect(page.locator("#mic")).to_have_text("Stop microphone")

    spoken = page.locator('#items li[data-role="user"]').last.locator(".speech")
    await expect(spoken).to_have_text(re.compile(r"speech from \d+\.\d s to \d+\.\d s"), timeout=WAIT_MS)
    await expect(page.locator('#items li[data-role="assistant"]').first).to_have_attribute("data-status", "cancelled")
    await expect(page.locator("#status")).to_contain_text("Interrupted")
    await assert_replied(page, "incomplete")  # cut at 8 tokens
    await expect(page.locator("#speech")).to_have_attribute("data-state", "silent")
    folder = Path(os.environ.get("AURAL_SCREENSHOTS", tmp_path))
    await page.screenshot(path=folder / "demo.png", full_page=True)


async def test_a_spoken_turn_sent_compressed_is_answered(page: Page) -> None:
    await page.select_option("#input-format", "compressed")
    await connect(page, max_tokens="8")
    await page.click("#mic")
    spoken = page.locator('#items li[data-role="user"]').last.locator(".speech")
    await expect(spoken).to_have_text(re.compile(r"speech from \d+\.\d s to \d+\.\d s"), timeout=WAIT_MS)
    await assert_replied(page, "incomplete")


@pytest.mark.app(access=Access(keys=(KEY,)))
async def test_the_page_works_from_the_keyboard_with_a_key_and_a_tool(page: Page) -> None:
    async def tab() -> str:
        await page.keyboard.press("Tab")
        focused: str = await page.evaluate("document.activeElement.id")
        return focused

    assert await tab() == "key"
    await page.keyboard.type("sk-wrong")
    await page.keyboard.press("Enter")
    await expect(page.locator("#status")).to_contain_text("refused", timeout=WAIT_MS)
    await page.keyboard.press("Control+A")
    await page.keyboard.type(KEY)

    assert await tab() == "input-format"
    assert await tab() == "tool-choice"
    await page.keyboard.press("ArrowDown")
    await expect(page.locator("#tool-choice")).to_have_value("get_time")
    assert await tab() == "max-tokens"
    await page.keyboard.type(str(CALL_TOKENS))
    assert await tab() == "transcribe"
    assert await tab() == "connect"
    await page.keyboard.press("Enter")
    await expect(page.locator("#status")).to_contain_text("Connected", timeout=WAIT_MS)
    assert [await tab(), await tab()] == ["mic", "text"]
    await page.keyboard.type("What time is it?")
    await page.keyboard.press("Enter")

    call = page.locator('#items li[data-type="function_call"] .text')
    await expect(call).to_have_text("get_time({})", timeout=WAIT_MS)
    output = page.locator('#items li[data-type="function_call_output"] .text')
    await expect(output).not_to_be_empty(timeout=WAIT_MS)
    assert json.loads(await output.inner_text()).keys() == {"time", "timezone"}
    answer = page.locator('#items li[data-role="assistant"]').last  # the model goes on with the result
    await expect(answer.locator(".text")).not_to_be_empty(timeout=WAIT_MS)
    await expect(page.locator("#reply")).not_to_be_empty()
    assert await page.locator("#text").input_value() == ""
