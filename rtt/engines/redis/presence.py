"""Redis presence: each node keeps a count per profile it has sessions for, plus a liveness key
with a TTL. A node that dies stops refreshing its key, so every profile it alone held is offline
within the TTL, with no cleanup needed from anyone.

A count goes up on a profile's first session on this node and down on its last, by increments
that commute (lua/presence.lua): join and leave go out on different pooled connections, and
whichever order Redis runs them in, a leave never undoes a later join. A write that failed may
or may not have landed, so after one the next refresh rewrites the node's counts from its own.

`online()` asks each live node's counts at once (HMGET), so its cost grows with the number of
nodes, not with the number of recipients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.engines.redis import keys
from rtt.engines.redis.bulk import execute
from rtt.engines.redis.scripts import script
from rtt.engines.redis.store import guarded
from rtt.slices import SLICE
from rtt.tasks import stop_task

log = logging.getLogger("rtt.presence")


async def live_nodes(client: Redis | RedisCluster) -> tuple[list[str], list[str]]:
    """The registered nodes whose presence key is alive (still running) and those whose key
    expired (killed without leaving), in name order."""
    nodes = sorted(n.decode() for n in await client.smembers(keys.NODES))
    if not nodes:
        return [], []
    async with client.pipeline(transaction=False) as pipe:  # a GET per key: many slots
        for node in nodes:
            pipe.get(keys.node_alive(node))
        flags = await pipe.execute()
    alive = [n for n, flag in zip(nodes, flags, strict=True) if flag is not None]
    return alive, [n for n, flag in zip(nodes, flags, strict=True) if flag is None]


class RedisPresence:
    def __init__(self, client: Redis | RedisCluster, node_id: str, ttl: float) -> None:
        self._r = client
        self.node_id = node_id
        self._ttl_ms = max(100, int(ttl * 1000))
        self._local: Counter[tuple[str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._count = script(client, "presence")
        self._dirty = False  # a count write failed: Redis may disagree with _local

    async def start(self) -> None:
        await self._refresh()
        self._task = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task)
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.delete(keys.node_alive(self.node_id))  # a key per DEL: two slots
                pipe.delete(keys.node_profiles(self.node_id))
                pipe.srem(keys.NODES, self.node_id)
                await pipe.execute()
        self._local.clear()
        await self._r.aclose()

    async def _refresh(self) -> None:
        """Renew this node's key; if it had vanished (Redis lost it) or a count write failed,
        rewrite every count from this node's own."""
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(keys.node_alive(self.node_id), 1, px=self._ttl_ms, get=True)
            pipe.sadd(keys.NODES, self.node_id)
            previous, _ = await pipe.execute()
        if previous is None or self._dirty:
            self._dirty = False
            counts = {keys.presence_member(a, p): 1 for a, p in self._local}
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.delete(keys.node_profiles(self.node_id))
                if counts:
                    pipe.hset(keys.node_profiles(self.node_id), mapping=counts)
                await pipe.execute()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self._refresh()
            except (redis.exceptions.RedisError, OSError) as e:
                log.warning("presence refresh failed: %s", e)

    async def _add(self, app: str, profile: str, delta: int) -> None:
        try:
            await self._count(
                keys=[keys.node_profiles(self.node_id)],
                args=[keys.presence_member(app, profile), delta],
            )
        except (redis.exceptions.RedisError, OSError):
            self._dirty = True
            raise

    @guarded
    async def join(self, app: str, profile: str) -> None:
        key = (app, profile)
        self._local[key] += 1
        if self._local[key] == 1:
            await self._add(app, profile, 1)

    async def leave(self, app: str, profile: str) -> None:
        key = (app, profile)
        if key not in self._local:
            return  # gone with leave_all
        self._local[key] -= 1
        if self._local[key] <= 0:
            del self._local[key]
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self._add(app, profile, -1)

    async def leave_all(self) -> None:
        self._local.clear()
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            await self._r.delete(keys.node_profiles(self.node_id))

    @guarded
    async def online(self, app: str, profiles: list[str]) -> set[str]:
        if not profiles:  # HMGET needs a field: a message to no one (Nexudus) asks for none
            return set()
        alive, dead = await live_nodes(self._r)
        if not alive and not dead:
            return set()
        if dead:  # a crashed node's leftovers: forget them
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.srem(keys.NODES, *dead)
                for node in dead:
                    pipe.delete(keys.node_profiles(node))
                await pipe.execute()
        found: set[str] = set()
        # a slice of profiles per round trip: the loop is served while Redis answers
        for start in range(0, len(profiles), SLICE):
            some = profiles[start : start + SLICE]
            members = [keys.presence_member(app, p) for p in some]
            # one HMGET per node, at once, each packed by hiredis (redis-py's packing of a
            # 1 000-member HMGET was a few % of a send's CPU)
            answers = await asyncio.gather(
                *(
                    execute(self._r, ["HMGET", key, *members], key)
                    for key in map(keys.node_profiles, alive)
                )
            )
            found.update(
                p
                for counts in answers
                for p, count in zip(some, counts, strict=True)
                if count is not None and int(count) > 0
            )
        return found
