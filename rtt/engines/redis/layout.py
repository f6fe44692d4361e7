"""Which key layout a store is written in, and the refusal to start on an older one.

The layout is `{rtt}:layout` (keys.LAYOUT_VERSION), set by the epoch script on a new store and
by `rtt migrate-redis` (migrate.py, where the layouts are told apart) on a moved one.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.engines.redis import keys

LEGACY_EPOCH = "rtt:epoch"  # layout 0's epoch key


class LegacyLayout(RuntimeError):
    """The store holds data in an older key layout (see the module)."""


async def refuse_legacy_layout(client: Redis | RedisCluster) -> None:
    """Raise LegacyLayout when the store was written in an older layout and not moved yet:
    starting on it would hide every stored message (or seq) and make every client RESYNC. A
    store with no epoch yet is new: the epoch script marks its layout."""
    legacy = await client.exists(LEGACY_EPOCH)
    epoch, layout = await client.mget([keys.EPOCH, keys.LAYOUT])  # one slot: {rtt}
    if legacy or (epoch is not None and layout != keys.LAYOUT_VERSION):
        raise LegacyLayout(
            "this Redis holds rtt data in an older key layout; stop every node and run once:"
            " rtt migrate-redis --redis-url <this Redis>"
        )
