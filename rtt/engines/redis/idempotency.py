"""Request-key claims on Redis (Store.claim / Store.settle): one hash per key, claimed and
settled by a Lua script each, so two nodes asking at once see one holder."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.engines.base import ClaimState
from rtt.engines.redis import keys
from rtt.engines.redis.scripts import LUA


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisClaims:
    """The claims of every node on one Redis; errors surface to the store's `guarded`."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._claim = client.register_script((LUA / "claim.lua").read_text())
        self._settle = client.register_script((LUA / "settle.lua").read_text())

    async def claim(
        self, app: str, key: str, fingerprint: bytes, token: str, ttl: float
    ) -> tuple[ClaimState, bytes | None]:
        reply = await self._claim(
            keys=[keys.idempotency(app, key)], args=[fingerprint, token, _ms(ttl)]
        )
        state = ClaimState(reply[0].decode())
        return state, bytes(reply[1]) if state is ClaimState.DONE else None

    async def settle(
        self, app: str, key: str, token: str, response: bytes | None, ttl: float
    ) -> None:
        record = b"0" if response is None else b"1"
        await self._settle(
            keys=[keys.idempotency(app, key)],
            args=[token, record, response or b"", _ms(ttl)],
        )
