"""The `redis` engine: many nodes share presence, fan-out and storage through one Redis."""

from __future__ import annotations

import uuid

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from rtt.engines.base import Engine
from rtt.engines.redis.broker import RedisBroker
from rtt.engines.redis.presence import RedisPresence
from rtt.engines.redis.store import RedisStore

MAX_CONNECTIONS = 64


def redis_client(url: str, timeout: float) -> Redis:
    """A bounded pool where callers queue (up to `timeout`) for a connection instead of failing.

    No automatic retries: a write whose reply was lost must not be sent twice behind our back;
    the caller gets 503 and retries (with an Idempotency-Key) instead."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=5,
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it


def redis_engine(
    url: str,
    *,
    timeout: float,
    probe_interval: float,
    presence_ttl: float,
    stream_max_items: int,
    stream_max_seconds: float,
) -> Engine:
    store = RedisStore(
        redis_client(url, timeout),
        stream_max_items=stream_max_items,
        stream_max_seconds=stream_max_seconds,
    )
    return Engine(
        store=store,
        outbox=store,
        broker=RedisBroker(redis_client(url, timeout), probe_interval),
        presence=RedisPresence(redis_client(url, timeout), uuid.uuid4().hex, presence_ttl),
    )
