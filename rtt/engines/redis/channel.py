"""The system channel's shared state on Redis (SystemChannel): nonces, the rate bucket and the
recorded senders are each claimed by one Lua script on the Redis clock, so every node sharing
the Redis sees one answer (a nonce replayed to another node is refused there too)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.domain.push import PushEntry
from rtt.engines.base import NonceClaim
from rtt.engines.redis import keys
from rtt.engines.redis.parts import Writer
from rtt.engines.redis.scripts import script
from rtt.engines.redis.store import guarded, outbox_parts


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisChannel:
    """SystemChannel for every node on one Redis; see engines/base.py for the guarantees."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._r = client
        self._claim_nonce = script(client, "claim_nonce")
        self._take_rate = script(client, "take_rate")
        self._add_sender = script(client, "add_sender")
        self._writer = Writer(client)

    @guarded
    async def claim_nonce(self, app: str, nonce: str, ttl: float, max_live: int) -> NonceClaim:
        reply = await self._claim_nonce(
            keys=[keys.channel_nonces(app)], args=[nonce, _ms(ttl), max_live]
        )
        return NonceClaim(reply.decode())

    @guarded
    async def take_rate(self, app: str, count: int, rate: int) -> bool:
        return bool(await self._take_rate(keys=[keys.channel_rate(app)], args=[count, rate]))

    @guarded
    async def add_sender(self, app: str, sender: str, max_senders: int) -> bool:
        added = await self._add_sender(keys=[keys.channel_senders(app)], args=[sender, max_senders])
        return bool(added)

    @guarded
    async def senders_among(self, app: str, profiles: list[str]) -> set[str]:
        found = await self._r.smismember(keys.channel_senders(app), profiles)
        return {p for p, hit in zip(profiles, found, strict=True) if hit}

    @guarded
    async def queue_pushes(self, app: str, pushes: list[PushEntry]) -> None:
        if pushes:
            await self._writer.run(await outbox_parts(app, pushes))

    async def close(self) -> None:
        await self._r.aclose()
