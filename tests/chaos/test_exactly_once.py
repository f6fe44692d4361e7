"""Exactly once across nodes: an Idempotency-Key, and a session's packetId, sent to two
`rtt serve --engine redis` processes at the same moment run once; a packet whose operations
partly failed is recorded whole, so its resend runs nothing again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit

from tests.support.clients import S2S, SERVER, socket
from tests.support.nodes import redis_nodes
from tests.support.server import running
from tests.support.server import test_settings as settings_for
from tests.support.tcp_proxy import TcpProxy

SYSTEM_FROM = {"id": None, "name": "App Administrator"}
ATTEMPTS = 10  # concurrent duplicates, alternating between the two nodes


def _profile(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _send_op(to: list[str], text: str) -> dict[str, Any]:
    return {
        "service": "messaging",
        "operation": "SYS_SEND_MESSAGE",
        "data": {"toProfileIds": to, "contentJson": {"text": text}, "fromJson": SYSTEM_FROM},
    }


async def test_one_key_sent_to_two_nodes_at_once_runs_once(tmp_path, clean_redis):
    """Pins: the same Idempotency-Key sent to two redis nodes at once ran twice (per-node
    locks, recall → run → remember not atomic): two msgIds, two frames delivered."""
    profile = _profile("key")
    body = {**SERVER, **_send_op([profile], "once")}
    headers = {"Idempotency-Key": uuid.uuid4().hex}
    async with redis_nodes(2, tmp_path, clean_redis) as (a, b), socket(a, profile) as ws:
        clients = [S2S(a), S2S(b)]
        try:
            results = await asyncio.gather(
                *(clients[n % 2].raw(body, headers) for n in range(ATTEMPTS))
            )
        finally:
            await asyncio.gather(*(c.close() for c in clients))
        assert all(status == 200 and r["status"] == 200 for status, r in results), results
        assert len({r["data"]["msgId"] for _, r in results}) == 1
        [frame] = await ws.pushed(1)
        assert frame["data"]["msgId"] == results[0][1]["data"]["msgId"]
        await ws.silent(0.5)
        counts = await ws.ok("messaging", "GET_MESSAGE_COUNTS", {})
        assert counts["inbox"]["total"] == 1


async def test_one_packet_resent_to_two_nodes_at_once_runs_once(tmp_path, clean_redis):
    """Pins: a session's packets were serialized by a lock in process memory, so a resend of
    one packet landing on another node at the same moment ran it again."""
    profile = _profile("pkt")
    async with redis_nodes(2, tmp_path, clean_redis) as (a, b), socket(a, profile) as ws:
        clients = [S2S(a), S2S(b)]
        try:
            auth = {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": SERVER}
            status, opened = await clients[0].raw({"packetId": 0, "messages": [auth]})
            assert status == 200, opened
            session = opened["messageResponses"][0]["data"]["sessionId"]
            packet = {"packetId": 1, "sessionId": session, "messages": [_send_op([profile], "p")]}
            results = await asyncio.gather(*(clients[n % 2].raw(packet) for n in range(ATTEMPTS)))
        finally:
            await asyncio.gather(*(c.close() for c in clients))
        assert all(status == 200 for status, _ in results), results
        assert all(r == results[0][1] for _, r in results), results
        [response] = results[0][1]["messageResponses"]
        assert response["status"] == 200, response
        [frame] = await ws.pushed(1)
        assert frame["data"]["msgId"] == response["data"]["msgId"]
        await ws.silent(0.5)


async def test_packet_with_a_failed_operation_is_recorded_whole_and_never_rerun(
    tmp_path, clean_redis
):
    """Pins: a packet in which one operation answered 503 was not recorded, so the client's
    resend ran again the operations that had succeeded (a duplicate message)."""
    profile = _profile("part")
    upstream = urlsplit(clean_redis).port
    assert upstream is not None
    async with TcpProxy(upstream) as proxy:
        settings = settings_for(
            tmp_path, engine="redis", redis_url=proxy.url, redis_timeout_seconds=1.0
        )
        async with running(settings) as node, socket(node, profile) as ws:
            s2s = S2S(node)
            try:
                auth = {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": SERVER}
                _, opened = await s2s.raw({"packetId": 0, "messages": [auth]})
                session = opened["messageResponses"][0]["data"]["sessionId"]
                packet = {
                    "packetId": 1,
                    "sessionId": session,
                    "messages": [_send_op([profile], "fine"), _send_op([profile], "POISON")],
                }
                proxy.cut_on(b"POISON")  # the second send's script never reaches Redis
                status, first = await s2s.raw(packet)
                proxy.cut_on(None)
                assert status == 200, first
                sent, failed = first["messageResponses"]
                assert sent["status"] == 200 and failed["status"] == 503, first
                for _ in range(2):
                    status, again = await s2s.raw(packet)
                    assert status == 200 and again == first
            finally:
                await s2s.close()
            [frame] = await ws.pushed(1)
            assert frame["data"]["msgId"] == sent["data"]["msgId"]
            await ws.silent(0.5)
            counts = await ws.ok("messaging", "GET_MESSAGE_COUNTS", {})
            assert counts["inbox"]["total"] == 1
