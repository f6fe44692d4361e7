"""The redis engine's own connections and presence under real concurrency: a real
redis-server, a real rtt node or engine, loopback only."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import redis.asyncio

from rtt.engines.redis import redis_client
from rtt.engines.redis.presence import RedisPresence
from tests.support.clients import S2S, socket
from tests.support.server import running
from tests.support.server import test_settings as settings_for
from tests.support.tcp_proxy import TcpProxy

APP = "app"


async def _clients(url: str) -> list[str]:
    """Every connection Redis has, but the one asking."""
    async with redis.asyncio.Redis.from_url(url) as admin:
        mine = await admin.client_id()
        return [str(c["addr"]) for c in await admin.client_list() if int(c["id"]) != mine]


async def test_a_stopped_node_leaves_no_redis_connection_open(tmp_path: Path, clean_redis: str):
    """Pins: the broker's and presence's Redis clients were never closed, so every node that
    stopped (or every engine a test built) left its pooled connections open on Redis."""
    assert await _clients(clean_redis) == []
    settings = settings_for(tmp_path, engine="redis", redis_url=clean_redis)
    async with running(settings) as server, socket(server, "p"):
        s2s = S2S(server)
        try:
            await s2s.send(["p"])  # store, presence and broker pools each open a connection
        finally:
            await s2s.close()
        assert len(await _clients(clean_redis)) >= 4  # + the broker's subscription
    assert await _clients(clean_redis) == []


async def test_a_leave_that_lands_late_never_undoes_a_later_join(clean_redis: str):
    """Pins: join and leave went out on different pooled connections as SADD and SREM, so a
    leave that reached Redis after a later join (held here on the network path) marked a
    profile offline while it had a live session."""
    upstream = urlsplit(clean_redis).port
    assert upstream is not None
    async with TcpProxy(upstream) as proxy:
        presence = RedisPresence(redis_client(proxy.url, 2.0, 8), "node-1", ttl=5.0)
        await presence.start()
        try:
            await presence.join(APP, "p")  # the first session
            proxy.hold_next()
            leave = asyncio.create_task(presence.leave(APP, "p"))  # it closes: held on the way
            await asyncio.wait_for(proxy.holding.wait(), 2.0)
            await presence.join(APP, "p")  # a new session, on another connection
            proxy.release()
            await asyncio.wait_for(leave, 2.0)
            assert await presence.online(APP, ["p"]) == {"p"}
            await presence.leave(APP, "p")
            assert await presence.online(APP, ["p"]) == set()
        finally:
            await presence.close()
