"""The `redis` engine: many nodes share presence, fan-out and storage through one Redis, or
through a Redis Cluster (writes split per slot: parts.py; sharded pub/sub: broker.py)."""

from __future__ import annotations

import uuid
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from rtt.engines.base import DEFAULT_RETENTION, Engine, Retention
from rtt.engines.redis.accounts import RedisAccounts
from rtt.engines.redis.broker import RedisBroker
from rtt.engines.redis.channel import RedisChannel
from rtt.engines.redis.cluster import Cluster
from rtt.engines.redis.numbers import RedisMessageNumbers
from rtt.engines.redis.piggyback import RedisPiggyback
from rtt.engines.redis.presence import RedisPresence
from rtt.engines.redis.push import RedisPush
from rtt.engines.redis.query import SYS_SCAN_MAX
from rtt.engines.redis.store import RedisStore


def _no_maintenance_notifications() -> dict[str, Any]:
    """redis-py 8 turns on maintenance notifications (a Redis Enterprise/Cloud feature) for RESP3,
    and while they are on its pool stops checking a pooled connection for EOF before reusing it:
    after a Redis restart the first command on every stale connection fails (a needless 503, a
    healing session closed). Turn them off where the option exists; older pools always check."""
    if not hasattr(BlockingConnectionPool, "maint_notifications_enabled"):
        return {}
    from redis.maint_notifications import MaintNotificationsConfig

    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


def _connection_options(timeout: float) -> dict[str, Any]:
    """Every connection's options, on one Redis or a cluster: `timeout` for each read, write
    and connect; no retries (see redis_client); a health check before reusing an idle one."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 5,
        **_no_maintenance_notifications(),
    }


def redis_client(url: str, timeout: float, pool_size: int) -> Redis:
    """A pool of at most `pool_size` connections where callers queue (up to `timeout`) for a
    connection instead of failing.

    No automatic retries: a write whose reply was lost must not be sent twice behind our back;
    the caller gets 503 and retries (with an Idempotency-Key) instead."""
    pool = BlockingConnectionPool.from_url(
        url, max_connections=pool_size, timeout=timeout, **_connection_options(timeout)
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it


def cluster_client(url: str, timeout: float, pool_size: int) -> Cluster:
    """A Redis Cluster client seeded by `url`, with at most `pool_size` connections per node,
    where callers queue (up to `timeout`) for a turn instead of failing (cluster.py).

    No automatic retries either (a MOVED is followed, that is no retry): a command whose
    connection broke fails, the client learns the cluster's layout again, the caller gets
    503 and retries; after a failover the next command finds the promoted replica."""
    client = Cluster.from_url(
        url, turns=pool_size, wait=timeout, max_connections=pool_size,
        **_connection_options(timeout),
    )  # fmt: skip
    assert isinstance(client, Cluster)
    return client


def redis_engine(
    url: str,
    *,
    timeout: float,
    probe_interval: float,
    presence_ttl: float,
    stream_max_items: int,
    stream_max_seconds: float,
    pool_size: int = 64,
    retention: Retention = DEFAULT_RETENTION,
    sys_scan_max: int = SYS_SCAN_MAX,
    cluster: bool = False,
    replicas: int = 0,
    replica_timeout: float = 1.0,
) -> Engine:
    """The engine's roles on one Redis (or, with `cluster`, a Redis Cluster seeded by `url`),
    each with its own pool of at most `pool_size` connections (RTT_REDIS_POOL_SIZE, per node
    on a cluster). `replicas`: see parts.py (RTT_REDIS_WAIT_REPLICAS)."""

    def client() -> Redis | RedisCluster:
        if cluster:
            return cluster_client(url, timeout, pool_size)
        return redis_client(url, timeout, pool_size)

    store_client = client()
    store = RedisStore(
        store_client,
        stream_max_items=stream_max_items,
        stream_max_seconds=stream_max_seconds,
        retention=retention,
        sys_scan_max=sys_scan_max,
        replicas=replicas,
        replica_timeout=replica_timeout,
    )
    return Engine(
        store=store,
        outbox=store,
        broker=RedisBroker(client(), probe_interval),
        presence=RedisPresence(client(), uuid.uuid4().hex, presence_ttl),
        channel=RedisChannel(client()),
        numbers=RedisMessageNumbers(store_client),
        accounts=RedisAccounts(store_client),  # the store's pool: no extra connections
        piggyback=RedisPiggyback(store_client),
        push=RedisPush(client()),
    )
