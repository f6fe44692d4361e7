"""Redis presence: a set of node ids per profile, and a liveness key per node with a TTL.

A node refreshes its key every third of the TTL; a node that dies stops refreshing, its key
expires, and every profile it alone held is offline — no cleanup needed from anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

import redis.exceptions
from redis.asyncio import Redis

from rtt.engines.redis import keys
from rtt.engines.redis.store import guarded

log = logging.getLogger("rtt.presence")


class RedisPresence:
    def __init__(self, client: Redis, node_id: str, ttl: float) -> None:
        self._r = client
        self.node_id = node_id
        self._ttl_ms = max(100, int(ttl * 1000))
        self._local: Counter[tuple[str, str]] = Counter()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._refresh()
        self._task = asyncio.create_task(self._refresh_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.delete(keys.node_alive(self.node_id))
                for app, profile in self._local:
                    pipe.srem(keys.presence(app, profile), self.node_id)
                await pipe.execute()
        self._local.clear()

    async def _refresh(self) -> None:
        """Renew this node's key; if it had vanished (Redis lost it), re-announce every profile."""
        previous = await self._r.set(keys.node_alive(self.node_id), 1, px=self._ttl_ms, get=True)
        if previous is None and self._local:
            async with self._r.pipeline(transaction=False) as pipe:
                for app, profile in self._local:
                    pipe.sadd(keys.presence(app, profile), self.node_id)
                await pipe.execute()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self._ttl_ms / 3000)
            try:
                await self._refresh()
            except (redis.exceptions.RedisError, OSError) as e:
                log.warning("presence refresh failed: %s", e)

    @guarded
    async def join(self, app: str, profile: str) -> None:
        key = (app, profile)
        self._local[key] += 1
        if self._local[key] == 1:
            await self._r.sadd(keys.presence(app, profile), self.node_id)

    async def leave(self, app: str, profile: str) -> None:
        key = (app, profile)
        self._local[key] -= 1
        if self._local[key] <= 0:
            del self._local[key]
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self._r.srem(keys.presence(app, profile), self.node_id)

    @guarded
    async def online(self, app: str, profiles: list[str]) -> set[str]:
        async with self._r.pipeline(transaction=False) as pipe:
            for profile in profiles:
                pipe.smembers(keys.presence(app, profile))
            members = await pipe.execute()
        nodes = sorted({n.decode() for m in members for n in m})
        if not nodes:
            return set()
        alive_flags = await self._r.mget([keys.node_alive(n) for n in nodes])
        alive = {n for n, flag in zip(nodes, alive_flags, strict=True) if flag is not None}
        return {
            p for p, m in zip(profiles, members, strict=True) if any(n.decode() in alive for n in m)
        }
