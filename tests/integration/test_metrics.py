"""`GET /metrics` of a live node, scraped over HTTP after real connects, closes and sends through
every door: exact values and labels, on both engines."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.clients import S2S, TIMEOUT, open_socket, socket
from tests.support.metrics import Samples, scrape, value
from tests.support.raw_ws import TEXT, open_raw
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(60)


async def settled(server: RunningServer, **expected: float) -> Samples:
    """Scrape until the unlabelled metrics named (`__` for nothing else) hold `expected`: a
    close or a fan-out on redis lands a moment after the client sees it."""

    async def probe() -> Samples:
        return await scrape(server)

    def done(samples: Samples) -> bool:
        return all(value(samples, name) == v for name, v in expected.items())

    samples, _ = await eventually(probe, done, timeout=5, what=f"metrics {expected}")
    return samples


def rongcloud_headers() -> dict[str, str]:
    nonce, stamp = uuid.uuid4().hex[:12], str(int(time.time() * 1000))
    signature = hashlib.sha1(f"rc-secret{nonce}{stamp}".encode()).hexdigest()
    return {"App-Key": "demo-key", "Nonce": nonce, "Timestamp": stamp, "Signature": signature}


async def test_connects_closes_and_sends_are_counted_exactly(tmp_path: Path):
    async with running(settings_for(tmp_path, metrics_cache_seconds=0.05)) as server:
        s2s = S2S(server)
        try:
            before = await scrape(server)
            assert value(before, "rtt_connections") == 0
            assert value(before, "rtt_connects_total") == 0
            assert value(before, "rtt_push_outbox_depth", app="demo") == 0

            one = await open_socket(server, "p1")
            two = await open_socket(server, "p2")
            await s2s.send(["p1", "p2", "p3"])  # p3 is offline: one outbox entry
            assert [f["seq"] for f in await one.pushed(1)] == [1]
            assert [f["seq"] for f in await two.pushed(1)] == [1]

            await one.send({"service": "rtt", "operation": "DISCONNECT", "data": {}})
            with pytest.raises(Exception):  # noqa: B017 (the server closes: any close will do)
                await one.recv()
            refused = await open_raw(server.settings.port, connect=False)
            refused.send(TEXT, b'{"service":"rtt","operation":"CONNECT","data":{}}')
            assert await refused.closed_with() == 4001  # no token
            dropped = await open_raw(server.settings.port, "p4")
            dropped.close()  # TCP gone without a close frame

            samples = await settled(
                server,
                rtt_connections=1,
                rtt_deliveries_total=3,
                rtt_send_to_push_seconds_count=1,
            )
            assert value(samples, "rtt_connects_total") == 4
            assert value(samples, "rtt_disconnects_total", code="1000") == 1
            assert value(samples, "rtt_disconnects_total", code="4001") == 1
            assert value(samples, "rtt_disconnects_total", code="1006") == 1
            assert value(samples, "rtt_disconnects_total", code="4003") == 0
            assert value(samples, "rtt_frames_pushed_total") == 2
            assert value(samples, "rtt_sends_total") == 1
            assert value(samples, "rtt_store_seconds_count") == 1
            assert 0 < value(samples, "rtt_store_seconds_sum") < 5
            assert value(samples, "rtt_store_seconds_bucket", le="+Inf") == 1
            sent = {"dialect": "s2s", "operation": "messaging/SYS_SEND_MESSAGE"}
            assert value(samples, "rtt_requests_total", **sent) == 1
            assert value(samples, "rtt_push_outbox_depth", app="demo") == 1
            assert value(samples, "rtt_push_outbox_depth", app="tight") == 0
            assert value(samples, "rtt_broker_reconnects_total") == 0
            await two.close()
            await settled(server, rtt_connections=0)
        finally:
            await s2s.close()


async def test_every_door_is_its_own_dialect(tmp_path: Path):
    async with (
        running(settings_for(tmp_path)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http,
        socket(server, "p1") as client,
    ):
        s2s = S2S(server)
        await s2s.ok(
            "messaging",
            "SYS_SEND_MESSAGE_SIMPLE",
            {"toProfileIds": ["p1"], "text": "a", "fromJson": {"name": "Ops"}},
        )
        await s2s.close()
        assert (await client.ok("messaging", "GET_MESSAGE_COUNTS"))["inbox"]["total"] == 1
        rc = {"fromUserId": "notices", "toUserIds": ["p1"], "messageType": "RC:TxtMsg",
              "content": '{"content":"b"}'}  # fmt: skip
        r = await http.post("/v4/system-channel/message/send", json=rc, headers=rongcloud_headers())
        assert r.status_code == 200, r.text
        basic = base64.b64encode(b"admin:admin-password").decode()
        r = await http.post(
            "/api/sys/chatusermessages",
            json={"FromUserId": 7, "ToUsers": [1], "ChatText": "c"},
            headers={"Authorization": f"Basic {basic}"},
        )
        assert r.status_code == 200, r.text
        await client.pushed(2)

        samples = await settled(server, rtt_sends_total=3, rtt_frames_pushed_total=2)
        ran = {
            (dict(labels)["dialect"], dict(labels)["operation"]): v
            for (name, labels), v in samples.items()
            if name == "rtt_requests_total"
        }
        assert ran == {
            ("s2s", "messaging/SYS_SEND_MESSAGE_SIMPLE"): 1,
            ("client", "messaging/GET_MESSAGE_COUNTS"): 1,
            ("rongcloud", "system/SYS_SEND_CHANNEL_MESSAGE"): 1,
            ("nexudus", "chatUserMessages/CREATE"): 1,
        }
        assert value(samples, "rtt_deliveries_total") == 3  # p1, p1, user 1 (offline)


async def test_rate_limit_refusals_are_counted(tmp_path: Path):
    async with running(settings_for(tmp_path)) as server, socket(server, "p1", app="tight") as c:
        ids = list(range(1, 9))
        for i in ids:  # the app allows 3 a second: sent at once, most are refused
            frame = {"service": "messaging", "operation": "GET_MESSAGE_COUNTS", "requestId": i}
            await c.send(frame)
        replies = [await c.recv() for _ in ids]
        refused = sum(1 for r in replies if r["status"] == 429)
        assert 0 < refused < len(ids), replies
        samples = await scrape(server)
        assert value(samples, "rtt_rate_limited_total", dialect="client") == refused
        ran = {"dialect": "client", "operation": "messaging/GET_MESSAGE_COUNTS"}
        assert value(samples, "rtt_requests_total", **ran) == len(ids) - refused


async def test_a_slow_consumer_close_is_counted(tmp_path: Path):
    settings = settings_for(tmp_path, socket_buffer_bytes=64 * 1024, reply_max_bytes=16 * 1024)
    async with running(settings) as server:
        s2s = S2S(server)
        slow = await open_raw(server.settings.port, "slow", rcvbuf=16 * 1024)
        try:

            async def flood() -> float:  # the client never reads: its unread bytes grow
                await s2s.send(["slow"], {"text": "x" * 100_000})
                return value(await scrape(server), "rtt_slow_consumer_closes_total")

            await eventually(flood, lambda n: n == 1, timeout=30, what="a 4003 close")
            samples = await settled(server, rtt_connections=0)
            assert value(samples, "rtt_disconnects_total", code="4003") == 1
        finally:
            slow.close()
            await s2s.close()


async def test_broker_reconnects_are_counted(tmp_path: Path, engine: str):
    async with running(settings_for(tmp_path)) as server:
        if engine == "local":  # an in-process broker never reconnects
            assert value(await scrape(server), "rtt_broker_reconnects_total") == 0
            return
        with redis.Redis.from_url(server.settings.redis_url) as r:
            assert r.client_kill_filter(_type="pubsub") >= 1
        await settled(server, rtt_broker_reconnects_total=1)
        s2s = S2S(server)
        async with socket(server, "p1") as client:  # and fan-outs flow again
            await s2s.send(["p1"])
            await client.pushed(1)
        await s2s.close()


async def test_metrics_off_answers_404_and_counts_nothing(tmp_path: Path):
    async with (
        running(settings_for(tmp_path, metrics=False)) as server,
        httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http,
    ):
        s2s = S2S(server)
        async with socket(server, "p1") as client:
            await s2s.send(["p1"])
            await client.pushed(1)
        await s2s.close()
        r = await http.get("/metrics")
        assert r.status_code == 404 and r.json()["reason_code"] == 40001, r.text
        assert server.node.metrics.value("rtt_sends_total") == 0
