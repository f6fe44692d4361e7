"""The redis engine's Redis Cluster client: redis-py's RedisCluster, made to behave as the
engine's standalone pool does in two ways.

- A bounded wait for a connection: redis-py's cluster pool fails at once (MaxConnectionsError)
  when a node's `max_connections` are all busy, where the standalone BlockingConnectionPool
  queues the caller up to the timeout. Here every command or pipeline first takes one of
  `pool_size` turns, waiting up to the timeout: at most that many are in flight, each with at
  most one connection per node, so no node's pool runs out (a thousand sockets connecting at
  once would otherwise each get 1013).
- A layout learnt again after a connection error in a pipeline too: with retries off,
  redis-py does that after a single command's error but not a pipeline's, and pipelines would
  keep knocking on a dead master's address after a failover.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

import redis.exceptions
from redis.asyncio.cluster import ClusterPipeline, RedisCluster

_holding = ContextVar("holding a turn", default=False)  # a redirect inside a pipeline's turn


class Cluster(RedisCluster):
    """RedisCluster with bounded turns (see the module's docstring)."""

    def __init__(self, *args: Any, turns: int, wait: float, **kwargs: Any) -> None:
        """At most `turns` commands or pipelines in flight; a caller waits up to `wait`."""
        super().__init__(*args, **kwargs)
        self._turns, self._wait = asyncio.Semaphore(turns), wait

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one turn (the one already held, inside a turn): a ConnectionError after
        `wait` seconds without one, as a standalone pool without a free connection raises."""
        if _holding.get():
            yield
            return
        try:
            async with asyncio.timeout(self._wait):
                await self._turns.acquire()
        except TimeoutError:
            raise redis.exceptions.ConnectionError("no connection free in time") from None
        token = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(token)
            self._turns.release()

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        async with self.turn():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        if shard_hint:
            raise ValueError("no shard_hint on a cluster")
        return Pipeline(self, transaction)


class Pipeline(ClusterPipeline):
    """A pipeline of a Cluster: in one turn, and a connection error relearns the layout."""

    _event_dispatcher: Any  # set by ClusterPipeline; declared abstract in its base

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        assert isinstance(client, Cluster)
        async with client.turn():
            try:
                return await super().execute(raise_on_error, allow_redirections)
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                await client.aclose()  # the next command learns the layout again
                raise
