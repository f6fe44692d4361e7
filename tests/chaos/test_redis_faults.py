"""Redis misbehaving under a live node: lost pub/sub, a deaf subscriber, Redis down, hung,
crashed with AOF, and restarted empty. Real redis-server processes, loopback only."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio

from tests.support.clients import S2S, Rtt, socket
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for
from tests.support.tcp_proxy import TcpProxy
from tests.support.waits import eventually

PROBE = 0.3
REDIS_TIMEOUT = 1.0
MARGIN = 0.5


def _settings(tmp_path: Path, redis_url: str, **overrides: Any):
    return settings_for(
        tmp_path,
        engine="redis",
        redis_url=redis_url,
        probe_interval_seconds=PROBE,
        presence_ttl_seconds=1.0,
        redis_timeout_seconds=REDIS_TIMEOUT,
        **overrides,
    )


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (AOF, fsync always), free to kill and restart."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(appendonly=True, directory=directory).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def node(tmp_path: Path, own_redis: RedisServer) -> AsyncIterator[RunningServer]:
    async with running(_settings(tmp_path, own_redis.url)) as server:
        yield server


def _profile(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _send_body(to: list[str], text: str = "hello") -> dict[str, Any]:
    return {
        "appId": "demo",
        "serverName": "backend",
        "serverSecret": "server-secret",
        "service": "messaging",
        "operation": "SYS_SEND_MESSAGE",
        "data": {
            "toProfileIds": to,
            "contentJson": {"text": text},
            "fromJson": {"id": None, "name": "App Administrator"},
        },
    }


async def _post(s2s: S2S, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await s2s.http.post("/s2sdispatcher", json=body, headers=headers)


async def _send_retrying(s2s: S2S, body: dict[str, Any], key: str, timeout: float = 5.0) -> str:
    """What a well-behaved backend does with 503 + Retry-After: the same request, same key."""
    response, _ = await eventually(
        lambda: _post(s2s, body, key),
        lambda r: r.status_code != 503,
        timeout=timeout,
        interval=0.1,
        what="send accepted after redis came back",
    )
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["msgId"])


@contextlib.asynccontextmanager
async def _behind_proxy(
    tmp_path: Path, redis_url: str, profile: str
) -> AsyncIterator[tuple[TcpProxy, Rtt, S2S]]:
    """A node whose Redis traffic goes through a TcpProxy, with one socket and an S2S client."""
    upstream = urlsplit(redis_url).port
    assert upstream is not None
    async with (
        TcpProxy(upstream) as proxy,
        running(_settings(tmp_path, proxy.url)) as server,
        socket(server, profile) as ws,
    ):
        s2s = S2S(server)
        try:
            yield proxy, ws, s2s
        finally:
            await s2s.close()


async def _ready(s2s: S2S) -> int:
    return (await s2s.http.get("/readyz")).status_code


async def test_pubsub_connection_killed_while_sending_heals_without_gap_or_duplicate(
    tmp_path, clean_redis
):
    """CLIENT KILL TYPE pubsub mid-stream: fan-outs lost while resubscribing must be healed."""
    count = 60
    profile = _profile("killed")
    admin = redis.asyncio.Redis.from_url(clean_redis)
    async with running(_settings(tmp_path, clean_redis)) as server, socket(server, profile) as ws:
        s2s = S2S(server)
        try:

            async def sender() -> list[str]:
                ids = []
                for i in range(count):
                    ids.append(await s2s.send([profile], {"i": i}))
                    await asyncio.sleep(0.01)
                return ids

            sending = asyncio.create_task(sender())
            killed = 0
            while not sending.done():
                await asyncio.sleep(0.15)
                killed += await admin.client_kill_filter(_type="pubsub")
            msg_ids = await sending
            frames = await ws.pushed(count, timeout=10)
            await ws.silent(0.5)
            await eventually(
                lambda: admin.client_list(_type="pubsub"),
                lambda clients: len(clients) == 1,
                what="node resubscribed",
            )
        finally:
            await s2s.close()
            await admin.aclose()
    assert killed >= 2
    assert [f["seq"] for f in frames] == list(range(1, count + 1))
    assert [f["data"]["msgId"] for f in frames] == msg_ids


async def test_deaf_subscription_is_detected_fails_readyz_and_heals_after_thaw(
    tmp_path, clean_redis
):
    """A silent pub/sub link: deaf within 2 probes, /readyz 503, sessions healed after thaw."""
    profile = _profile("deaf")
    async with _behind_proxy(tmp_path, clean_redis, profile) as (proxy, ws, s2s):
        first = await s2s.send([profile])
        assert [f["data"]["msgId"] for f in await ws.pushed(1)] == [first]
        assert await _ready(s2s) == 200
        assert proxy.pubsub_connections == 1

        proxy.freeze_pubsub()
        _, detected = await eventually(
            lambda: _ready(s2s),
            lambda status: status == 503,
            timeout=4 * PROBE,
            interval=0.01,
            what="/readyz 503 while deaf",
        )
        assert detected <= 2 * PROBE, detected
        sent = [await s2s.send([profile], {"i": i}) for i in range(5)]
        await ws.silent(3 * PROBE)  # deaf: nothing reaches the socket
        assert await _ready(s2s) == 503  # still deaf: resubscribing cannot succeed

        proxy.thaw()
        healed = await ws.pushed(5, timeout=5)
        assert [(f["seq"], f["data"]["msgId"]) for f in healed] == list(
            zip(range(2, 7), sent, strict=True)
        )
        await eventually(lambda: _ready(s2s), lambda s: s == 200, what="ready again")
        live = await s2s.send([profile])
        assert [(f["seq"], f["data"]["msgId"]) for f in await ws.pushed(1)] == [(7, live)]
        await ws.silent(0.3)


async def test_stored_send_whose_fanout_publish_fails_is_acknowledged_once_and_healed(
    tmp_path, clean_redis
):
    """A send stored but not published must answer 200 (not a 500 whose retry stores it twice)."""
    profile = _profile("nopub")
    async with _behind_proxy(tmp_path, clean_redis, profile) as (proxy, ws, s2s):
        proxy.cut_on(b"PUBLISH")
        lost = await s2s.send([profile], {"text": "doorbell lost"})
        await ws.silent(0.3)
        proxy.cut_on(None)
        rung = await s2s.send([profile], {"text": "doorbell rung"})
        frames = await ws.pushed(2)  # the gap before `rung` is healed from the store
        assert [(f["seq"], f["data"]["msgId"]) for f in frames] == [(1, lost), (2, rung)]
        counts = await ws.ok("messaging", "GET_MESSAGE_COUNTS", {})
        assert counts["inbox"]["total"] == 2


async def test_send_while_redis_is_down_answers_503_and_the_retry_stores_one_copy(node, own_redis):
    """Redis down: 503 + Retry-After (brainCloud shape) fast; the retry stores exactly one copy."""
    profile = _profile("down")
    s2s = S2S(node)
    body, key = _send_body([profile]), uuid.uuid4().hex
    try:
        own_redis.kill()
        started = time.monotonic()
        refused = await _post(s2s, body, key)
        elapsed = time.monotonic() - started
        assert refused.status_code == 503
        assert elapsed <= REDIS_TIMEOUT + MARGIN, elapsed
        assert int(refused.headers["Retry-After"]) >= 1
        error = refused.json()
        assert set(error) == {"status", "reason_code", "status_message", "severity"}
        assert error["status"] == 503 and error["severity"] == "ERROR"
        assert isinstance(error["reason_code"], int) and error["status_message"]

        await asyncio.to_thread(own_redis.restart)
        msg_id = await _send_retrying(s2s, body, key)
        assert await _send_retrying(s2s, body, key) == msg_id  # a late duplicate retry
        async with socket(node, profile) as ws:
            assert ws.connect["seq"] == 1
            counts = await ws.ok("messaging", "GET_MESSAGE_COUNTS", {})
            assert counts["inbox"]["total"] == 1
            page = await ws.ok(
                "messaging",
                "GET_MESSAGES_PAGE",
                {"context": {"pagination": {"rowsPerPage": 10, "pageNumber": 1}}},
            )
            assert [i["msgId"] for i in page["results"]["items"]] == [msg_id]
    finally:
        await s2s.close()


async def test_send_while_redis_hangs_answers_503_within_the_redis_timeout(node, own_redis):
    """A stalled Redis (SIGSTOP) must not hang the send: 503 + Retry-After within the timeout."""
    profile = _profile("hung")
    s2s = S2S(node)
    body, key = _send_body([profile]), uuid.uuid4().hex
    try:
        own_redis.pause()
        try:
            started = time.monotonic()
            refused = await _post(s2s, body, key)
            elapsed = time.monotonic() - started
        finally:
            own_redis.resume()
        assert refused.status_code == 503, refused.text
        assert elapsed <= REDIS_TIMEOUT + MARGIN, elapsed
        assert "Retry-After" in refused.headers
        assert refused.json()["status"] == 503

        msg_id = await _send_retrying(s2s, body, key)
        async with socket(node, profile) as ws:
            assert ws.connect["seq"] == 1
            got = await ws.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]})
            assert got["actual"] == 1
    finally:
        await s2s.close()


async def test_seq_never_goes_backwards_after_redis_kill_9_and_aof_restart(node, own_redis):
    """Redis kill -9 + AOF restart: the next seq is old + 1, no RESYNC, `since` replays it."""
    profile = _profile("aof")
    s2s = S2S(node)
    try:
        async with socket(node, profile) as ws:
            before = [await s2s.send([profile]) for _ in range(3)]
            assert [f["seq"] for f in await ws.pushed(3)] == [1, 2, 3]
            epoch = ws.connect["epoch"]

            await asyncio.to_thread(own_redis.restart)
            after = await _send_retrying(s2s, _send_body([profile], "after"), uuid.uuid4().hex)
            frame = (await ws.pushed(1, timeout=5))[0]
            assert (frame["seq"], frame["data"]["msgId"]) == (4, after)
            await ws.silent(0.3)  # in particular: no RESYNC, nothing was lost

        async with socket(node, profile, since=3, epoch=epoch) as resumed:
            assert resumed.connect["seq"] == 4 and resumed.connect["epoch"] == epoch
            frame = (await resumed.pushed(1))[0]
            assert (frame["seq"], frame["data"]["msgId"]) == (4, after)
            await resumed.silent(0.3)
        assert after not in before
    finally:
        await s2s.close()


async def test_redis_restarted_without_data_changes_epoch_and_clients_resync(node, own_redis):
    """Redis back empty: new epoch, live RESYNC, and an old-epoch `since` gets RESYNC, not a gap."""
    profile = _profile("wiped")
    s2s = S2S(node)
    try:
        async with socket(node, profile) as ws:
            for _ in range(2):
                await s2s.send([profile])
            assert [f["seq"] for f in await ws.pushed(2)] == [1, 2]
            old_epoch = ws.connect["epoch"]

            await asyncio.to_thread(own_redis.restart, wipe=True)
            resync = await _next_control(ws, "RESYNC", timeout=5)
            assert resync["data"]["seq"] == 0
            await eventually(
                lambda: _epoch(node),
                lambda epoch: epoch != old_epoch,
                what="node adopted a new epoch",
            )
            # three new items: the new stream now reaches past the old cursor (2)
            for i in range(3):
                await _send_retrying(s2s, _send_body([profile], f"new {i}"), uuid.uuid4().hex)

        async with socket(node, profile, since=2, epoch=old_epoch) as resumed:
            assert resumed.connect["epoch"] != old_epoch
            assert resumed.connect["seq"] == 3
            resync = await _next_control(resumed, "RESYNC", timeout=2)
            assert resync["data"]["seq"] == 3
            await resumed.silent(0.3)  # no partial replay of seq 3 after the RESYNC
    finally:
        await s2s.close()


async def _epoch(server: RunningServer) -> str:
    return str(server.node.engine.store.epoch)


async def _next_control(ws, operation: str, timeout: float) -> dict[str, Any]:
    """The next `rtt/<operation>` frame; stream frames before it are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.recv(timeout)
            if frame.get("service") == "rtt" and frame.get("operation") == operation:
                return frame


async def test_the_store_pool_is_bounded_by_its_setting(tmp_path, clean_redis):
    """RTT_REDIS_POOL_SIZE bounds each pool: 60 concurrent sends through a node with a pool of
    2 all succeed (callers queue for a connection) and the node never holds more than 2
    connections per role (store, broker, presence: 6) to Redis."""
    settings = _settings(tmp_path, clean_redis, redis_pool_size=2)
    peak = 0
    async with running(settings) as node, redis.asyncio.Redis.from_url(clean_redis) as admin:
        s2s = S2S(node)
        try:
            watching = True

            async def watch() -> None:
                nonlocal peak
                while watching:
                    clients = await admin.client_list()
                    peak = max(peak, len(clients) - 1)  # all but the admin's own
                    await asyncio.sleep(0.005)

            watcher = asyncio.create_task(watch())
            ids = await asyncio.gather(*(s2s.send([f"p{i}"]) for i in range(60)))
            watching = False
            await watcher
        finally:
            await s2s.close()
    assert len(set(ids)) == 60
    assert 0 < peak <= 6, peak
