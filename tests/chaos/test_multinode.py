"""Several `rtt serve --engine redis` processes on one Redis, or on a Redis Cluster: fan-out,
presence, a node crash."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from tests.support.clients import S2S, open_socket, socket
from tests.support.nodes import redis_nodes
from tests.support.waits import eventually

PRESENCE_TTL = 1.0


@pytest.fixture(params=["redis", "redis-cluster"])
def shared(request: pytest.FixtureRequest) -> tuple[str, bool]:
    """(URL, is a cluster) of the emptied Redis or Redis Cluster the nodes share."""
    cluster = request.param == "redis-cluster"
    return str(request.getfixturevalue("clean_cluster" if cluster else "clean_redis")), cluster


def _profile(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def _online(node, profiles: list[str]) -> dict[str, bool]:
    s2s = S2S(node)
    try:
        data = await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": profiles})
    finally:
        await s2s.close()
    return data["online"]


async def test_profile_with_sockets_on_two_nodes_gets_every_message_on_both_in_seq_order(
    tmp_path, shared
):
    """A fan-out via a third node must reach every node's socket, gap-free and in one seq order."""
    count = 40
    profile, other = _profile("fan"), _profile("other")
    async with (
        redis_nodes(3, tmp_path, shared[0], cluster=shared[1]) as (a, b, c),
        socket(a, profile) as on_a,
        socket(b, profile) as on_b,
    ):
        s2s = S2S(c)
        try:
            msg_ids = await asyncio.gather(
                *(s2s.send([profile, other], {"i": i}) for i in range(count))
            )
        finally:
            await s2s.close()
        got_a = await on_a.pushed(count, timeout=10)
        got_b = await on_b.pushed(count, timeout=10)
        await on_a.silent(0.3)
        await on_b.silent(0.3)
    stream_a = [(f["seq"], f["data"]["msgId"]) for f in got_a]
    stream_b = [(f["seq"], f["data"]["msgId"]) for f in got_b]
    assert [seq for seq, _ in stream_a] == list(range(1, count + 1))
    assert stream_a == stream_b
    assert sorted(m for _, m in stream_a) == sorted(msg_ids)


async def test_presence_through_any_node_sees_sockets_on_every_node(tmp_path, shared):
    """SYS_GET_ONLINE must not answer only for the node it is asked on."""
    on_a, on_b, nobody = _profile("pa"), _profile("pb"), _profile("nobody")
    profiles = [on_a, on_b, nobody]
    async with redis_nodes(3, tmp_path, shared[0], cluster=shared[1]) as nodes:
        a, b, _ = nodes
        async with socket(a, on_a), socket(b, on_b):
            for node in nodes:
                assert await _online(node, profiles) == {on_a: True, on_b: True, nobody: False}
        for node in nodes:  # a clean close leaves at once, everywhere
            await eventually(
                lambda node=node: _online(node, profiles),
                lambda online: not any(online.values()),
                timeout=2.0,
                what="sockets gone offline",
            )


async def test_killed_node_presence_expires_and_its_client_resumes_elsewhere_without_loss(
    tmp_path, shared
):
    """kill -9: presence expires in TTL; sends meanwhile are stored, queued, replayed elsewhere."""
    profile = _profile("crash")
    url, cluster = shared
    async with redis_nodes(2, tmp_path, url, cluster=cluster, presence_ttl=PRESENCE_TTL) as (
        a,
        victim,
    ):
        s2s = S2S(a)
        doomed = await open_socket(victim, profile)
        try:
            first = await s2s.send([profile])
            assert [f["seq"] for f in await doomed.pushed(1)] == [1]
            assert (await _online(a, [profile]))[profile] is True

            victim.kill()
            killed_at = time.monotonic()
            # sent while the dead node's presence still stands: no live socket will get it
            during = await s2s.send([profile], {"text": "during"})
            await eventually(
                lambda: _online(a, [profile]),
                lambda online: online[profile] is False,
                timeout=PRESENCE_TTL + 1.0,
                what="crashed node's presence expired",
            )
            gone_after = time.monotonic() - killed_at
            assert gone_after <= PRESENCE_TTL + 0.5, gone_after

            after = [await s2s.send([profile], {"text": f"after {i}"}) for i in range(2)]
            pending = await s2s.ok("push", "SYS_GET_PENDING", {"profileId": profile})
            queued = [(i["kind"], i["ref"]) for i in pending["items"]]
            assert queued[-2:] == [("message", m) for m in after], queued
        finally:
            await s2s.close()
            with contextlib.suppress(Exception):
                await doomed.close()

        async with socket(a, profile, since=1) as resumed:
            assert resumed.connect["seq"] == 4
            replayed = await resumed.pushed(3)
            assert [(f["seq"], f["data"]["msgId"]) for f in replayed] == list(
                zip([2, 3, 4], [during, *after], strict=True)
            )
            await resumed.silent(0.3)
            inbox = await resumed.ok(
                "messaging",
                "GET_MESSAGES",
                {"msgbox": "inbox", "msgIds": [first, during, *after]},
            )
            assert inbox["actual"] == 4
