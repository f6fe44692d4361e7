"""A master of the Redis Cluster SIGKILLed under two rtt nodes, its replica promoted: no send
acknowledged before, during or after is lost (a send is acked once a replica holds it)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from typing import Any

import pytest
import websockets

from loadtest.node import NodeProcess
from rtt.engines.redis import keys
from tests.support.clients import S2S, socket
from tests.support.nodes import redis_nodes
from tests.support.redis_cluster import RedisClusterProcesses

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


async def _send_until_acked(s2s: S2S, profile: str, i: int, timeout: float = 30.0) -> str:
    """Retry a send answered 503 (the cluster is failing over) until it is acknowledged."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await s2s.call(
            "messaging", "SYS_SEND_MESSAGE",
            {"toProfileIds": [profile], "contentJson": {"i": i},
             "fromJson": {"id": None, "name": "App Administrator"}},
        )  # fmt: skip
        if status == 200 and body["status"] == 200:
            return str(body["data"]["msgId"])
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)


async def _replay(node: NodeProcess, profile: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every stored frame of `profile`, by a resume from 0 on `node`; a socket closed 1013 (the
    node's first command on a dead master's address failed: retry shortly) connects again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with socket(node, profile, since=0) as resumed:
                return await resumed.pushed(resumed.connect["seq"], timeout=20)
        except websockets.exceptions.ConnectionClosedError as e:
            assert e.rcvd is not None and e.rcvd.code == 1013 and time.monotonic() < deadline
            await asyncio.sleep(0.2)


@pytest.mark.timeout(120)
async def test_a_killed_master_loses_no_acknowledged_send(tmp_path):
    cluster = await asyncio.to_thread(RedisClusterProcesses(3).start)
    profile = f"fo-{uuid.uuid4().hex[:8]}"
    try:
        async with redis_nodes(2, tmp_path, cluster.url, cluster=True) as (a, b):
            s2s = S2S(a)
            try:
                acked = [await _send_until_acked(s2s, profile, i) for i in range(10)]
                victim = cluster.master_of(keys.seq("demo", profile))
                killing = asyncio.create_task(asyncio.to_thread(cluster.fail_over, victim))
                while not killing.done():  # sends while the master dies and is replaced
                    acked.append(await _send_until_acked(s2s, profile, len(acked)))
                await killing
                acked += [await _send_until_acked(s2s, profile, 100 + i) for i in range(10)]
            finally:
                await s2s.close()
            frames = await _replay(b, profile)
    finally:
        await asyncio.to_thread(cluster.stop)
    stored = [(f["seq"], f["data"]["msgId"]) for f in frames]
    assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1))
    ids = [m for _, m in stored]
    assert all(ids.count(m) == 1 for m in acked), "an acknowledged send lost or doubled"
    assert [m for m in ids if m in set(acked)] == acked  # in the order they were acked
