"""Access control against the fake engine: keys, client secrets, origins and the per-key cap, all answered
before the websocket upgrade (HTTP 401/403 with OpenAI's error body), and keys kept out of the logs."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp.test_utils import TestClient

from aural.runtime.server.access import Access, key_id, origin_allowed
from aural.runtime.server.client_secrets import ClientSecrets, SecretStoreFull
from tests.support.client import RawClient, assert_error

from .conftest import Serve

KEY, OTHER = "sk-test-4f9c2a", "sk-test-other-77"
REALTIME = "/v1/realtime?model=fake"


class Clock:
    """A clock the test moves by hand, so that a secret expires without sleeping."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def refused(
    http: TestClient[Any, Any], status: int, code: str, headers: dict[str, str] | None = None, protocols: Any = ()
) -> str:
    """Opening the websocket fails with `status` before the upgrade; returns the error's message."""
    with pytest.raises(aiohttp.WSServerHandshakeError) as failed:
        await http.ws_connect(REALTIME, headers=headers, protocols=protocols)
    assert failed.value.status == status
    offered = {"Sec-WebSocket-Protocol": ", ".join(protocols)} if protocols else {}
    async with http.get("/v1/realtime", headers={**(headers or {}), **offered}) as reply:  # its body read
        assert reply.status == status
        error = (await reply.json())["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", code) and error["message"]
    message: str = error["message"]
    return message


async def opened(http: TestClient[Any, Any], **options: Any) -> RawClient:
    client = RawClient.aiohttp(await http.ws_connect(REALTIME, **options))
    await client.expect("session.created")
    return client


async def mint(http: TestClient[Any, Any], key: str | None = KEY, **body: Any) -> dict[str, Any]:
    async with http.post("/v1/realtime/client_secrets", json=body, headers=bearer(key) if key else {}) as reply:
        assert reply.status == 200, await reply.text()
        created: dict[str, Any] = await reply.json()
    return created


@pytest.fixture
async def keyed(serve: Serve) -> TestClient[Any, Any]:
    return await serve(access=Access(keys=(KEY, OTHER)))


async def test_keys_are_needed_on_the_websocket_and_models_but_not_healthz(keyed: TestClient[Any, Any]) -> None:
    assert "Missing API key" in await refused(keyed, 401, "invalid_api_key")
    assert "Incorrect API key" in await refused(keyed, 401, "invalid_api_key", headers=bearer("sk-wrong"))
    protocols = ("realtime", "openai-insecure-api-key.sk-wrong")
    await refused(keyed, 401, "invalid_api_key", protocols=protocols)
    async with keyed.get("/v1/models") as reply:
        assert reply.status == 401
    async with keyed.get("/v1/models", headers=bearer(OTHER)) as reply:
        assert reply.status == 200
    async with keyed.get("/healthz") as reply:
        assert reply.status == 200


async def test_a_key_opens_a_conversation_as_a_header_or_a_subprotocol(keyed: TestClient[Any, Any]) -> None:
    await opened(keyed, headers=bearer(KEY))
    browser = await opened(keyed, protocols=("realtime", f"openai-insecure-api-key.{OTHER}"))
    assert browser.subprotocol == "realtime", "the key protocol is never echoed"


async def test_a_client_secret_pins_its_session_and_expires(serve: Serve) -> None:
    clock = Clock()
    http = await serve(access=Access(keys=(KEY,), secrets=ClientSecrets(clock)))
    session = {"type": "realtime", "instructions": "Answer in French.", "max_output_tokens": 64}
    created = await mint(http, session=session, expires_after={"anchor": "created_at", "seconds": 60})
    assert created["value"].startswith("ek_") and created["expires_at"] == int(clock.now) + 60
    assert created["session"]["instructions"] == "Answer in French." and "id" not in created["session"]
    client = await opened(http, protocols=("realtime", f"openai-insecure-api-key.{created['value']}"))
    assert client.events[0]["session"]["instructions"] == "Answer in French."
    assert client.events[0]["session"]["max_output_tokens"] == 64
    async with http.post("/v1/realtime/client_secrets", json={}, headers=bearer(created["value"])) as reply:
        assert reply.status == 403, "a client secret cannot mint more"
    clock.now += 60
    assert "expired" in await refused(http, 401, "invalid_api_key", headers=bearer(created["value"]))
    assert "expired" in await refused(http, 401, "invalid_api_key", headers=bearer("ek_never-minted"))


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"expires_after": {"anchor": "created_at", "seconds": 5}}, "expires_after.seconds"),
        ({"expires_after": {"anchor": "created_at", "seconds": 7201}}, "expires_after.seconds"),
        ({"session": {"type": "transcription"}}, "session.type"),
        ({"session": {"type": "realtime", "max_output_tokens": 0}}, "max_output_tokens"),
        ([], "object"),
    ],
)
async def test_a_bad_client_secret_request_is_a_400(keyed: TestClient[Any, Any], body: Any, where: str) -> None:
    async with keyed.post("/v1/realtime/client_secrets", json=body, headers=bearer(KEY)) as reply:
        assert reply.status == 400
        error = (await reply.json())["error"]
    assert error["type"] == "invalid_request_error" and where in error["message"]


async def test_the_secret_store_is_bounded(serve: Serve) -> None:
    http = await serve(access=Access(keys=(KEY,), secrets=ClientSecrets(max_live=1)))
    await mint(http)
    async with http.post("/v1/realtime/client_secrets", headers=bearer(KEY)) as reply:
        assert reply.status == 429 and (await reply.json())["error"]["code"] == "rate_limit_exceeded"


def test_expired_secrets_are_pruned_and_make_room() -> None:
    clock = Clock()
    store = ClientSecrets(clock, max_live=2)
    early, _ = store.mint(None, None, 10)
    store.mint(None, None, 20)
    with pytest.raises(SecretStoreFull):
        store.mint(None, None)
    clock.now += 10
    assert store.grant(early) is None and len(store) == 1
    later, grant = store.mint("abcd1234", None)
    assert store.grant(later) == grant and grant.key_id == "abcd1234"


async def test_without_keys_secrets_still_pin_and_expire_and_other_keys_are_ignored(serve: Serve) -> None:
    clock = Clock()
    http = await serve(access=Access(secrets=ClientSecrets(clock)))
    await opened(http, headers=bearer("anything"))
    created = await mint(http, key=None, session={"type": "realtime", "instructions": "Dev server."})
    client = await opened(http, headers=bearer(created["value"]))
    assert client.events[0]["session"]["instructions"] == "Dev server."
    clock.now += 600
    await refused(http, 401, "invalid_api_key", headers=bearer(created["value"]))


@pytest.mark.parametrize(
    ("allowed", "origin", "admitted"),
    [
        (None, "https://evil.example", False),
        (None, "null", False),
        (None, "http://localhost:5173", True),
        (None, "https://127.0.0.1", True),
        (None, "http://[::1]:3000", True),
        (("https://app.example",), "https://app.example", True),
        (("https://app.example",), "http://localhost:5173", False),
        (("*",), "https://evil.example", True),
    ],
)
async def test_browser_origins(serve: Serve, allowed: tuple[str, ...] | None, origin: str, admitted: bool) -> None:
    http = await serve(access=Access(allowed_origins=allowed))
    if admitted:
        await opened(http, headers={"Origin": origin})
    else:
        assert origin in await refused(http, 403, "origin_not_allowed", headers={"Origin": origin})
    await opened(http)  # no Origin: not a browser, unaffected


async def test_the_per_key_cap_counts_a_keys_secrets_too(serve: Serve) -> None:
    http = await serve(access=Access(keys=(KEY, OTHER), max_sessions_per_key=2))
    secret = (await mint(http))["value"]
    await opened(http, headers=bearer(KEY))
    first = await opened(http, headers=bearer(secret))
    third = RawClient.aiohttp(await http.ws_connect(REALTIME, headers=bearer(KEY)))
    assert_error(await third.expect("error"), "session_limit_reached")
    await opened(http, headers=bearer(OTHER))
    assert first.disconnect is not None
    await first.disconnect(False)
    for _ in range(500):  # the server frees the slot once it has seen the close
        async with http.get("/healthz") as reply:
            if (await reply.json())["sessions"] == 2:
                break
        await asyncio.sleep(0.01)
    await opened(http, headers=bearer(KEY))


async def test_keys_never_reach_the_logs(serve: Serve) -> None:
    clock = Clock()
    http = await serve(access=Access(keys=(KEY,), secrets=ClientSecrets(clock)))
    with structlog.testing.capture_logs() as logs:
        secret = (await mint(http))["value"]
        await opened(http, headers=bearer(secret))
        await refused(http, 401, "invalid_api_key", headers=bearer(KEY[:-1]))
        clock.now += 600
        await refused(http, 401, "invalid_api_key", headers=bearer(secret))
    assert any(entry.get("key") == key_id(KEY) for entry in logs), "a key is named by its id"
    assert [entry["event"] for entry in logs].count("refused") == 4
    written = repr(logs)
    assert KEY not in written and KEY[:-1] not in written and secret not in written


@pytest.mark.parametrize(
    ("host", "origin", "admitted"),
    [
        ("voice.example", "https://voice.example", True),
        ("voice.example:8443", "https://voice.example:8443", True),
        ("voice.example", "https://voice.example:8443", False),
        ("voice.example", "http://localhost:5173", False),
        ("voice.example", "https://evil.example", False),
    ],
)
def test_off_loopback_the_default_is_the_same_origin(host: str, origin: str, admitted: bool) -> None:
    assert origin_allowed(origin, host, False, None) is admitted
