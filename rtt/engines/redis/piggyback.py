"""Piggybacked events on Redis: each stored event's id sits in its recipient's `event_seqs`
zset scored by its stream seq (append_events.lua adds it in the send's own script, deletes and
the sweep remove it), and a session's cursor is a key with the session's idle lifetime. One
Lua script reads the events after the cursor and moves it, so every node agrees."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.domain.events import Event
from rtt.domain.paging import ITEM_OVERHEAD
from rtt.engines.redis import keys
from rtt.engines.redis.scripts import script
from rtt.engines.redis.store import guarded
from rtt.protocol import loads


class RedisPiggyback:
    """engines/base.py `EventPiggyback` on one Redis, shared by every node."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._take = script(client, "piggyback_events")

    @guarded
    async def take(
        self, app: str, profile: str, session_id: str, max_count: int, max_bytes: int, ttl: float
    ) -> list[Event]:
        items = await self._take(
            keys=[
                keys.piggyback_cursor(app, profile, session_id),
                keys.event_seqs(app, profile),
                keys.events(app, profile),
            ],
            args=[max_count, max_bytes, ITEM_OVERHEAD, max(1, int(ttl * 1000))],
        )
        return [Event.from_item(loads(item)) for item in items]
