"""Aural on a local Ray cluster: the ingress and two engine replicas of the tiny model, on the CPU.

One application serves the module (Ray and two model loads take a minute on two cores). Which replica holds a
conversation is read where an operator reads it: the per-replica gauges of the ingress' `/metrics`.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import ray
from openai import AsyncOpenAI
from ray import serve
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from aural.runtime.cluster.deploy import ClusterSettings, application, local_cluster_env
from aural.runtime.cluster.ingress import IngressSettings
from aural.runtime.cluster.replica import EngineLoader
from tests.support import resume
from tests.support.client import RawClient, Turn, assert_consistent, b64, read_response, text_turn, validate_openai

pytestmark = [pytest.mark.model, pytest.mark.ray]

MODEL = "gpt-realtime"
TEXTS = ("Hello there.", "What can you do?", "Tell me more.")
SETTLE = 60.0
"""Seconds the replicas' reports may take to show a change (posted every second; a session its ingress never closed
waits for the idle sweep)."""
IDLE_CLOSE = 10.0
RESTART = 300.0
"""Seconds Serve may take to replace a killed ingress replica (it imports the runtime and loads the VAD model)."""


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """The application on a local Ray cluster; its base URL."""
    local_cluster_env()
    ray.init(num_cpus=4, include_dashboard=False, namespace="aural-tests", log_to_driver=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = ClusterSettings(
            EngineLoader("tiny", {"kv_budget": 64 << 20}),
            IngressSettings(model_names=(MODEL,)),
            replicas=2,
            idle_close=IDLE_CLOSE,
        )
        serve.run(application(settings), name="aural", route_prefix="/")
        yield f"127.0.0.1:{port}"
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@asynccontextmanager
async def conversation(cluster: str) -> AsyncIterator[RawClient]:
    async with ws_connect(f"ws://{cluster}/v1/realtime?model={MODEL}", subprotocols=["realtime"]) as ws:  # type: ignore[list-item]
        client = RawClient.websocket(ws)
        await client.expect("session.created")
        yield client


def get(cluster: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{cluster}{path}", timeout=10) as reply:
        body: bytes = reply.read()
        return body.decode()


def held(cluster: str) -> dict[str, int]:
    """Conversations each engine replica holds, by replica id, as `/metrics` shows them."""
    pattern = re.compile(r'^aural_replica_conversations\{replica="([^"]+)"\} ([0-9.]+)$', re.MULTILINE)
    return {replica: int(float(count)) for replica, count in pattern.findall(get(cluster, "/metrics"))}


async def settled(cluster: str, total: int) -> dict[str, int]:
    """`held` once the replicas' reports add up to `total` conversations."""
    async with asyncio.timeout(SETTLE):
        while True:
            counts = held(cluster)
            if sum(counts.values()) == total and len(counts) == 2:
                return counts
            await asyncio.sleep(0.5)


async def talk(client: RawClient, texts: tuple[str, ...] = TEXTS) -> list[Turn]:
    return [await text_turn(client, text) for text in texts]


async def test_turns_stay_on_one_replica_and_conversations_spread(cluster: str) -> None:
    async with AsyncExitStack() as stack:
        opened = [await stack.enter_async_context(conversation(cluster)) for _ in range(8)]
        async with asyncio.TaskGroup() as group:
            talks = [group.create_task(talk(client)) for client in opened]
        for turns in (task.result() for task in talks):
            assert [turn.cached_tokens > 0 for turn in turns] == [False, True, True], "later turns reuse the cache"
        counts = await settled(cluster, 8)  # one session a conversation: no turn went to another replica
        assert min(counts.values()) >= 2, f"8 new conversations spread over both replicas: {counts}"
    await settled(cluster, 0)  # a closed conversation frees its cache on its replica


async def test_the_openai_client_through_the_ingress(cluster: str, speech_pcm: bytes) -> None:
    client = AsyncOpenAI(api_key="test", websocket_base_url=f"ws://{cluster}/v1")
    async with client.realtime.connect(model=MODEL) as realtime:

        async def receive_checked() -> bytes:
            raw = await realtime.recv_bytes()
            assert realtime.parse_event(raw) == validate_openai(raw)
            return raw

        frames = RawClient(receive_checked, realtime.send_raw)
        await frames.expect("session.created")
        await realtime.input_audio_buffer.append(audio=b64(speech_pcm))
        await realtime.input_audio_buffer.commit()
        await realtime.response.create(response={"max_output_tokens": 12})
        first = await read_response(frames)
        await realtime.conversation.item.create(
            item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "And then?"}]}
        )
        await realtime.response.create(response={"max_output_tokens": 12})
        second = await read_response(frames)
    await client.close()
    for turn in (first, second):
        assert_consistent(turn)
    assert first.response["usage"]["input_token_details"]["audio_tokens"] > 0
    assert second.cached_tokens > 0


def test_health_and_models_cover_the_fleet(cluster: str) -> None:
    health = json.loads(get(cluster, "/healthz"))
    assert health["status"] == "ok" and health["model"] == "tiny"
    assert health["kv_pool"]["blocks_total"] > 0
    assert [model["id"] for model in json.loads(get(cluster, "/v1/models"))["data"]] == ["tiny", MODEL]


async def test_a_conversation_outlives_its_ingress(cluster: str) -> None:
    async with conversation(cluster) as client:
        session_id = client.events[0]["session"]["id"]
        await talk(client, TEXTS[:2])
        [user_item, *_] = [
            event["item"]["id"]
            for event in client.events
            if event["type"] == "conversation.item.added" and event["item"].get("role") == "user"
        ]
        ray.kill(replica_actor("", "AuralIngress"), no_restart=True)  # Serve starts another ingress replica
        with pytest.raises(ConnectionClosed):
            await client.recv()
    url = f"ws://{cluster}/v1/realtime?model={MODEL}&aural.resume={session_id}"
    async with asyncio.timeout(RESTART):
        while True:  # the proxy refuses the websocket until the new ingress replica runs
            try:
                async with ws_connect(url, subprotocols=["realtime"]) as ws:  # type: ignore[list-item]
                    opened = [(await resume.recv(ws))["type"], (await resume.recv(ws))["type"]]
                    await ws.send(json.dumps({"type": "conversation.item.retrieve", "item_id": user_item}))
                    retrieved = (await resume.until_type(ws, "conversation.item.retrieved"))[-1]
                    await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": 12}}))
                    done = (await resume.until_type(ws, "response.done"))[-1]
                break
            except (InvalidStatus, OSError):
                await asyncio.sleep(1)
    assert opened == ["session.created", "aural.session.resumed"]
    assert retrieved["item"]["content"][0]["text"] == TEXTS[0], "the stored items came back on the new ingress"
    assert done["response"]["status"] in ("completed", "incomplete")
    assert done["response"]["usage"]["output_tokens"] > 0


async def test_a_lost_replica_loses_no_conversation(cluster: str) -> None:
    async with conversation(cluster) as reference:
        expected = await talk(reference)
    await settled(cluster, 0)
    async with conversation(cluster) as client:
        before = await talk(client, TEXTS[:2])
        counts = await settled(cluster, 1)
        [home] = [replica for replica, count in counts.items() if count == 1]
        ray.kill(replica_actor(home), no_restart=True)
        after = await text_turn(client, TEXTS[2])
    assert [turn.streamed_text for turn in before] == [turn.streamed_text for turn in expected[:2]]
    assert after.response["status"] == expected[2].response["status"]
    assert after.streamed_text == expected[2].streamed_text, "the rebuilt cache answers token for token alike"
    assert after.response["usage"]["output_tokens"] == expected[2].response["usage"]["output_tokens"]
    assert after.cached_tokens == 0, "the conversation was prefilled again on the other replica"
    assert after.response["usage"]["input_tokens"] == expected[2].response["usage"]["input_tokens"]


def replica_actor(replica: str, deployment: str = "AuralEngine") -> ray.actor.ActorHandle[object]:
    """A replica's actor, by its id (any replica of the deployment: "")."""
    names = [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["name"].startswith(f"SERVE_REPLICA::aural#{deployment}#")
        and actor["name"].endswith(f"#{replica}" if replica else "")
    ]
    return ray.get_actor(names[0], namespace="serve")
