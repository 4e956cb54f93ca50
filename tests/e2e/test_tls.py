"""`wss://`: the runtime serves TLS (the Node SDK always uses it) and the SDK trusts a private CA."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiohttp import web

import aural.sdk
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.server.app import create_app
from aural.runtime.server.run import tls_context

pytestmark = pytest.mark.model

CA = trustme.CA()


@pytest.fixture
async def wss_url(engine: TransformersEngine, tmp_path: Path) -> AsyncIterator[str]:
    certificate = CA.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    runner = web.AppRunner(create_app(engine))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls_context(str(cert), str(key))).start()
        yield f"wss://127.0.0.1:{runner.addresses[0][1]}/v1/realtime"
    finally:
        await runner.cleanup()


async def test_a_turn_over_tls(wss_url: str) -> None:
    client_context = ssl.create_default_context()
    CA.configure_trust(client_context)
    async with aural.sdk.connect(wss_url, ssl=client_context) as conn:
        await conn.add_message("user", text="Hello over TLS.")
        reply = conn.create_response(max_output_tokens=4)
        await reply.collect()
        assert reply.response is not None and reply.response.status in ("completed", "incomplete")
        assert conn.session is not None and conn.session.type == "realtime"


async def test_an_untrusted_certificate_is_refused(wss_url: str) -> None:
    with pytest.raises(aural.sdk.AuralConnectionError):
        await aural.sdk.connect(wss_url)
