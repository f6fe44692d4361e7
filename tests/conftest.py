"""Fixtures: a real rtt node per test on a free loopback port, and real clients for it."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.clients import S2S
from tests.support.redis_cluster import RedisClusterProcesses
from tests.support.redis_server import RedisServer
from tests.support.server import RunningServer, running, test_settings


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running(test_settings(tmp_path)) as node:
        yield node


@pytest.fixture
async def s2s(server: RunningServer) -> AsyncIterator[S2S]:
    client = S2S(server)
    yield client
    await client.close()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis for the whole run: RTT_TEST_REDIS_URL, or a redis-server we start."""
    url = os.environ.get("RTT_TEST_REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    """The shared Redis, emptied so each test starts from nothing."""
    with redis.Redis.from_url(redis_url) as client:
        client.flushall()
    return redis_url


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """A real 3-master Redis Cluster (a replica each) on loopback ports, for the whole run."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    cluster = RedisClusterProcesses(masters=3)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def clean_cluster(redis_cluster: RedisClusterProcesses) -> str:
    """The shared cluster, emptied; its seed URL."""
    redis_cluster.flush()
    return redis_cluster.url
