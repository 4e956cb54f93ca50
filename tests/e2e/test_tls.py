"""`wss://`: the runtime serves TLS (the Node SDK always uses it) and the SDK trusts a private CA: one of the
test's own (trustme) or the development CA that `aural serve --tls-self-signed DIR` keeps."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

import aural.sdk
from aural.runtime.engine.qwen2_audio.engine import TransformersEngine
from aural.runtime.server.dev_tls import DevCertificates

from .conftest import serve_wss

pytestmark = pytest.mark.model

CA = trustme.CA()


@pytest.fixture
async def wss_url(engine: TransformersEngine, tmp_path: Path) -> AsyncIterator[str]:
    certificate = CA.issue_cert("127.0.0.1")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    certificate.cert_chain_pems[0].write_to_path(str(cert))
    certificate.private_key_pem.write_to_path(str(key))
    async with serve_wss(engine, cert, key) as port:
        yield f"wss://127.0.0.1:{port}/v1/realtime"


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


async def test_the_sdk_trusts_the_development_ca(dev_wss: tuple[int, DevCertificates]) -> None:
    port, files = dev_wss
    url = f"wss://localhost:{port}/v1/realtime"
    with pytest.raises(aural.sdk.AuralConnectionError):
        await aural.sdk.connect(url)  # the system's CAs do not know it
    trusting = ssl.create_default_context(cafile=str(files.ca))
    async with aural.sdk.connect(url, ssl=trusting) as conn:
        await conn.add_message("user", text="Hello over the development CA.")
        reply = conn.create_response(max_output_tokens=4)
        await reply.collect()
        assert reply.response is not None and reply.response.status in ("completed", "incomplete")
