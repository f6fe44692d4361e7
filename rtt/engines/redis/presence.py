"""Redis presence: each node keeps the set of profiles it has sessions for, plus a liveness key
with a TTL. A node that dies stops refreshing its key, so every profile it alone held is offline
within the TTL, with no cleanup needed from anyone.

`online()` asks each live node's set at once (SMISMEMBER), so its cost grows with the number of
nodes, not with the number of recipients.
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
from rtt.tasks import stop_task

log = logging.getLogger("rtt.presence")


def _member(app: str, profile: str) -> str:
    return f"{app}\x00{profile}"


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
            await stop_task(self._task)
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.delete(keys.node_alive(self.node_id), keys.node_profiles(self.node_id))
                pipe.srem(keys.NODES, self.node_id)
                await pipe.execute()
        self._local.clear()

    async def _refresh(self) -> None:
        """Renew this node's key; if it had vanished (Redis lost it), re-announce every profile."""
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.set(keys.node_alive(self.node_id), 1, px=self._ttl_ms, get=True)
            pipe.sadd(keys.NODES, self.node_id)
            previous, _ = await pipe.execute()
        if previous is None and self._local:
            members = [_member(a, p) for a, p in self._local]
            await self._r.sadd(keys.node_profiles(self.node_id), *members)

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
            await self._r.sadd(keys.node_profiles(self.node_id), _member(app, profile))

    async def leave(self, app: str, profile: str) -> None:
        key = (app, profile)
        self._local[key] -= 1
        if self._local[key] <= 0:
            del self._local[key]
            with contextlib.suppress(redis.exceptions.RedisError, OSError):
                await self._r.srem(keys.node_profiles(self.node_id), _member(app, profile))

    @guarded
    async def online(self, app: str, profiles: list[str]) -> set[str]:
        nodes = sorted(n.decode() for n in await self._r.smembers(keys.NODES))
        if not nodes:
            return set()
        alive_flags = await self._r.mget([keys.node_alive(n) for n in nodes])
        alive = [n for n, flag in zip(nodes, alive_flags, strict=True) if flag is not None]
        dead = [n for n in nodes if n not in alive]
        members = [_member(app, p) for p in profiles]
        async with self._r.pipeline(transaction=False) as pipe:
            for node in alive:
                pipe.smismember(keys.node_profiles(node), members)
            if dead:  # a crashed node's leftovers: forget them
                pipe.srem(keys.NODES, *dead)
                pipe.delete(*(keys.node_profiles(n) for n in dead))
            answers = await pipe.execute()
        return {
            p
            for flags in answers[: len(alive)]
            for p, on in zip(profiles, flags, strict=True)
            if on
        }
