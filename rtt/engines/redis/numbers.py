"""Message numbers on Redis: append_message.lua takes the next number from the app's counter
(INCR) and files the message under it in a sorted set, in the script that stores the message,
so numbers are unique across every node and a message is never stored without one;
change_message.lua drops a deleted message's number. A send pays one INCR and one ZADD."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.engines.redis import keys
from rtt.engines.redis.store import guarded


class RedisMessageNumbers:
    """MessageNumbers on the shared Redis (see engines/base.py), through the store's client
    (the store closes it)."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._r = client

    @guarded
    async def numbers(self, app: str, msg_ids: list[str]) -> dict[str, int]:
        if not msg_ids:
            return {}
        scores = await self._r.zmscore(keys.message_numbers(app), msg_ids)
        return {i: int(s) for i, s in zip(msg_ids, scores, strict=True) if s is not None}

    @guarded
    async def message_id(self, app: str, number: int) -> str | None:
        found = await self._r.zrangebyscore(
            keys.message_numbers(app), number, number, start=0, num=1
        )
        return found[0].decode() if found else None

    @guarded
    async def window(
        self, app: str, descending: bool, start: int, limit: int
    ) -> tuple[int, list[tuple[int, str]]]:
        key = keys.message_numbers(app)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.zcard(key)
            pipe.zrange(key, start, start + limit - 1, desc=descending, withscores=True)
            total, members = await pipe.execute()
        return int(total), [(int(score), m.decode()) for m, score in members]
