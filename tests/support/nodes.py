"""Real `rtt serve --engine redis` node processes for multi-node and crash tests.

Each node serves the test apps (tests/support/server.APPS_TOML), so `S2S`, `open_socket` and
`token` from tests/support/clients.py work against it unchanged (it has `url` and `ws_url`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis

from loadtest.node import NodeProcess
from tests.support.server import APPS_TOML

STOP_SECONDS = 5.0


def engine_env(request: pytest.FixtureRequest, engine: str) -> dict[str, str]:
    """`RTT_ENGINE=engine` for a node process; on redis also the session's Redis, emptied."""
    env = {"RTT_ENGINE": engine}
    if engine == "redis":
        url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(url) as client:
            client.flushall()
        env["RTT_REDIS_URL"] = url
    return env


def redis_node(
    directory: Path,
    redis_url: str,
    *,
    probe_interval: float = 0.3,
    presence_ttl: float = 1.0,
    redis_timeout: float = 1.0,
    heartbeat: float = 5.0,
    cluster: bool = False,
) -> NodeProcess:
    """A node (not yet launched) on the redis engine with short test timers; with `cluster`,
    `redis_url` seeds a Redis Cluster and a send is acked once a replica holds it."""
    return NodeProcess(
        APPS_TOML,
        directory=directory,
        env={
            "RTT_ENGINE": "redis",
            "RTT_REDIS_URL": redis_url,
            "RTT_PROBE_INTERVAL_SECONDS": str(probe_interval),
            "RTT_PRESENCE_TTL_SECONDS": str(presence_ttl),
            "RTT_REDIS_TIMEOUT_SECONDS": str(redis_timeout),
            "RTT_HEARTBEAT_SECONDS": str(heartbeat),
            "RTT_REDIS_CLUSTER": "true" if cluster else "false",
            "RTT_REDIS_WAIT_REPLICAS": "1" if cluster else "0",
        },
    )


async def start_all(nodes: list[NodeProcess], timeout: float = 20.0) -> None:
    """Launch every node at once and wait (off the event loop) until all are ready."""
    for node in nodes:
        node.launch()
    await asyncio.gather(*(asyncio.to_thread(n.wait_ready, timeout) for n in nodes))


@contextlib.asynccontextmanager
async def redis_nodes(
    count: int, directory: Path, redis_url: str, *, cluster: bool = False, **timers: float
) -> AsyncIterator[list[NodeProcess]]:
    """`count` ready nodes sharing one Redis. At the end each live node gets SIGTERM and must
    exit by itself within STOP_SECONDS (a shutdown that hangs is a bug, not a teardown detail)."""
    nodes = [redis_node(directory, redis_url, cluster=cluster, **timers) for _ in range(count)]
    try:
        await start_all(nodes)
        yield nodes
    finally:
        graceful = await asyncio.gather(*(asyncio.to_thread(n.stop, STOP_SECONDS) for n in nodes))
    hung = [n.port for n, ok in zip(nodes, graceful, strict=True) if not ok]
    assert not hung, f"nodes on ports {hung} did not shut down on SIGTERM"
