"""A master of the Redis Cluster SIGKILLed under two rtt nodes, its replica promoted: no send
acknowledged before, during or after is lost (a send is acked once a replica holds it), and
sockets connected throughout get each one exactly once, in seq order, by push or by resume."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from typing import Any

import httpx
import pytest
import websockets

from loadtest.node import NodeProcess
from rtt.engines.redis import keys
from tests.support.clients import S2S, open_socket, socket
from tests.support.nodes import redis_nodes
from tests.support.redis_cluster import RedisClusterProcesses
from tests.support.waits import eventually

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")

RETRY = 0.2  # what a client waits before retrying a 503 or a socket closed 1013


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
        assert status == 503 and time.monotonic() < deadline, body
        await asyncio.sleep(RETRY)


def _closed_to_retry(error: websockets.exceptions.ConnectionClosed) -> bool:
    """Closed 1013 (storage unavailable: retry shortly), the close a failover may cause."""
    return error.rcvd is not None and error.rcvd.code == 1013


class Listener:
    """A client that keeps a socket on `node` as a real one does: every stream frame kept by
    seq, and after a close 1013 it connects again resuming after the last seq it holds
    without a gap. `frames` maps seq → msgId; `doubled` lists a seq seen with two msgIds."""

    def __init__(self, node: NodeProcess, profile: str) -> None:
        self.node, self.profile = node, profile
        self.frames: dict[int, str] = {}
        self.doubled: list[int] = []
        self.reconnects = 0
        self._task = asyncio.create_task(self._run())

    def held(self) -> int:
        """The last seq before the first gap."""
        seq = 0
        while seq + 1 in self.frames:
            seq += 1
        return seq

    async def _run(self) -> None:
        while True:
            try:
                client = await open_socket(self.node, self.profile, since=self.held())
                try:
                    while True:
                        frame = await client.recv(timeout=3600)
                        if "seq" in frame:
                            msg_id = frame["data"]["msgId"]
                            if self.frames.setdefault(frame["seq"], msg_id) != msg_id:
                                self.doubled.append(frame["seq"])
                finally:
                    await client.close()
            except websockets.exceptions.ConnectionClosed as e:
                assert _closed_to_retry(e), e
                self.reconnects += 1
                await asyncio.sleep(RETRY)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def _readyz(node: NodeProcess) -> int:
    async with httpx.AsyncClient(base_url=node.http, timeout=5) as http:
        return (await http.get("/readyz")).status_code


async def _replay(node: NodeProcess, profile: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every stored frame of `profile`, by a resume from 0 on `node`, retried after a 1013."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with socket(node, profile, since=0) as resumed:
                return await resumed.pushed(resumed.connect["seq"], timeout=20)
        except websockets.exceptions.ConnectionClosed as e:
            assert _closed_to_retry(e) and time.monotonic() < deadline, e
            await asyncio.sleep(RETRY)


@pytest.mark.timeout(120)
async def test_a_killed_master_loses_no_acknowledged_send(tmp_path):
    cluster = await asyncio.to_thread(RedisClusterProcesses(3).start)
    profile = f"fo-{uuid.uuid4().hex[:8]}"
    try:
        async with redis_nodes(2, tmp_path, cluster.url, cluster=True) as (a, b):
            listeners = [Listener(a, profile), Listener(b, profile)]
            s2s = S2S(a)
            try:
                acked = [await _send_until_acked(s2s, profile, i) for i in range(10)]
                victim = cluster.master_of(keys.box("demo", profile))
                killing = asyncio.create_task(asyncio.to_thread(cluster.fail_over, victim))
                while not killing.done():  # sends while the master dies and is replaced
                    acked.append(await _send_until_acked(s2s, profile, len(acked)))
                await killing
                acked += [await _send_until_acked(s2s, profile, 100 + i) for i in range(10)]
                for node in (a, b):  # both subscribed and served again: ready
                    await eventually(
                        lambda node=node: _readyz(node), lambda status: status == 200,
                        timeout=10, what="/readyz 200 after the failover",
                    )  # fmt: skip
            finally:
                await s2s.close()
            stored = {f["seq"]: f["data"]["msgId"] for f in await _replay(b, profile)}
            deadline = time.monotonic() + 20
            while any(listener.held() < len(stored) for listener in listeners):
                assert time.monotonic() < deadline, [lis.held() for lis in listeners]
                await asyncio.sleep(0.1)
            for listener in listeners:
                await listener.stop()
    finally:
        await asyncio.to_thread(cluster.stop)
    assert sorted(stored) == list(range(1, len(stored) + 1))
    ids = list(stored.values())
    assert all(ids.count(m) == 1 for m in acked), "an acknowledged send lost or doubled"
    assert [m for m in ids if m in set(acked)] == acked  # in the order they were acked
    for listener in listeners:
        assert listener.doubled == []
        assert {seq: listener.frames[seq] for seq in stored} == stored
