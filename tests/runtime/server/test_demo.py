"""The browser demo's files as the server serves them (against the fake engine); the page itself runs in headless
Chromium in tests/e2e/test_browser.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from yarl import URL

from aural.runtime.server.access import Access
from aural.runtime.server.demo import STATIC

from .conftest import Serve

ROOT = Path(__file__).resolve().parents[3]


async def test_the_page_and_every_file_it_loads_are_served_without_a_key(serve: Serve) -> None:
    http = await serve(access=Access(keys=("sk-test",)))  # the page holds no secret: its websocket needs the key
    async with http.get("/") as reply:
        assert reply.status == 200
        assert reply.content_type == "text/html"
        assert "connect-src 'self'" in reply.headers["Content-Security-Policy"]
        page = await reply.text()
    script = (STATIC / "app.js").read_text()
    loaded = set(re.findall(r"/static/[\w.-]+", page + script))
    assert loaded == {"/static/style.css", "/static/app.js", "/static/worklet.js"}
    for path in loaded:
        async with http.get(path) as reply:
            assert reply.status == 200, path
            assert reply.content_type in ("text/css", "text/javascript", "application/javascript"), path
            assert await reply.read() == (STATIC / path.removeprefix("/static/")).read_bytes()


async def test_nothing_outside_the_static_folder_is_served(serve: Serve) -> None:
    http = await serve()
    for path in ("/static/%2E%2E/demo.py", "/static/..%2Fdemo.py", "/static/missing.js"):
        async with http.get(URL(path, encoded=True)) as reply:
            assert reply.status in (403, 404), path


def test_a_wheel_ships_every_static_file() -> None:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {path for pattern in patterns["aural.runtime.server.static"] for path in STATIC.glob(pattern)}
    files = {path for path in STATIC.rglob("*") if path.is_file()}
    assert files and files <= shipped, "setuptools takes package data by these globs"
