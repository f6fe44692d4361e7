"""Redis pub/sub broker: one channel, one publish per send, one subscription per node. On a
Redis Cluster the channel is a sharded one (SPUBLISH / SSUBSCRIBE): the subscription is a
connection to the master that owns the channel's slot, found again after each loss (a failover
moves the channel to the promoted replica), and probed the same way.

Pub/sub is at-most-once, so the subscriber watches itself: it pings on its own connection every
`probe_interval` and, if nothing (not even the pong) arrives for 1.5 intervals, it declares
itself deaf, reconnects, and once subscribed again calls `on_gap` so every session heals from
the store. While deaf, `healthy()` is False and `/readyz` fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster

from rtt.engines.base import Fanout
from rtt.engines.redis.keys import FANOUT_CHANNEL
from rtt.protocol import Frame
from rtt.slices import SLICE
from rtt.tasks import stop_task

log = logging.getLogger("rtt.broker")

DEAF_AFTER = 1.5  # intervals without a word from Redis
RECONNECT_DELAY = 0.2


class Deaf(Exception):
    """The subscription went silent: even our own pings got no pong."""


# Between two targets' parts: they are JSON texts (or empty), and JSON never holds a raw NUL.
_PART_END = b"\x00"


def encode(fanout: Fanout) -> bytes:
    """`len(header)` + header JSON (app, head length, profiles, seqs) + head + tail + the
    targets' parts, each ended by a NUL. Column by column, so a 100 000-target fanout is
    encoded (and decoded) by C calls, not a Python loop per target on the event loop."""
    profiles, seqs, parts = fanout.profiles, fanout.seqs, fanout.parts
    header = orjson.dumps([fanout.app, len(fanout.frame.head), list(profiles), list(seqs)])
    frame = fanout.frame.head + fanout.frame.tail
    return b"".join(
        (len(header).to_bytes(4, "big"), len(frame).to_bytes(4, "big"), header, frame,
         _PART_END.join(parts), _PART_END if parts else b"")
    )  # fmt: skip


def decode(raw: bytes) -> Fanout:
    size, frame_size = int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:8], "big")
    app, head_size, profiles, seqs = orjson.loads(raw[8 : 8 + size])
    body = raw[8 + size : 8 + size + frame_size]
    frame = Frame(body[:head_size], body[head_size:])
    parts = raw[8 + size + frame_size : -1].split(_PART_END) if profiles else []
    return Fanout(app, frame, profiles, seqs, parts)


def _piece(fanout: Fanout, start: int) -> Fanout:
    """The targets `start` to `start + SLICE` of `fanout`: the whole of it when it is small."""
    if start == 0 and len(fanout.profiles) <= SLICE:
        return fanout
    end = start + SLICE
    return Fanout(
        fanout.app, fanout.frame, fanout.profiles[start:end], fanout.seqs[start:end],
        fanout.parts[start:end],
    )  # fmt: skip


class RedisBroker:
    def __init__(self, client: Redis | RedisCluster, probe_interval: float) -> None:
        self._r = client
        self._sharded = isinstance(client, RedisCluster)
        self._node: Redis | None = None  # on a cluster: the channel's master, while subscribed
        self._interval = probe_interval
        self._handler: Callable[[Fanout], None] = lambda fanout: None
        self._on_gap: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._last_heard = 0.0

    async def start(self, handler: Callable[[Fanout], None], on_gap: Callable[[], None]) -> None:
        self._handler, self._on_gap = handler, on_gap
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), max(5.0, 4 * self._interval))

    async def publish(self, fanout: Fanout) -> None:
        """Never raises for Redis trouble: the items are already committed, and failing the send
        now would make its caller retry and store them twice. A connection that died under us
        gets one retry on a fresh one (sessions drop a duplicate by seq); after that the lost
        doorbell is left to healing, like any other lost fan-out.

        A fan-out of more than SLICE targets goes out as one message per SLICE targets (a
        target is in one of them; messages on one connection arrive in order): encoding,
        decoding and dispatching 100 000 targets in one piece held every node's loop for
        tens of milliseconds."""
        for start in range(0, len(fanout.profiles), SLICE):  # no targets: nothing to ring
            await self._publish(encode(_piece(fanout, start)))

    async def _publish(self, raw: bytes) -> None:
        for attempt in (1, 2):
            try:
                if self._sharded:
                    await self._r.spublish(FANOUT_CHANNEL, raw)
                else:
                    await self._r.publish(FANOUT_CHANNEL, raw)
                return
            except (redis.exceptions.RedisError, OSError) as e:
                retry = attempt == 1 and isinstance(e, redis.exceptions.ConnectionError)
                if not retry:
                    log.warning("fanout not published; receivers heal from the store: %s", e)
                    return

    def healthy(self) -> bool:
        loop = asyncio.get_running_loop()
        return self._subscribed.is_set() and (
            loop.time() - self._last_heard <= DEAF_AFTER * self._interval
        )

    async def close(self) -> None:
        """Stop listening and close the client's pool, so no connection of ours stays open."""
        if self._task is not None:
            await stop_task(self._task)
        await self._close_node()
        await self._r.aclose()

    async def _run(self) -> None:
        first = True
        while True:
            try:
                pubsub = await self._pubsub()
            except (redis.exceptions.RedisError, OSError) as e:
                log.warning("broker cannot reach the channel's node: %s", e)
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            try:
                await self._subscribe(pubsub)
                if not first:
                    log.warning("broker resubscribed; healing sessions from the store")
                    self._on_gap()
                first = False
                await self._listen(pubsub)
            except (redis.exceptions.RedisError, OSError, Deaf, TimeoutError) as e:
                log.warning("broker subscription lost: %s", e or type(e).__name__)
            finally:
                self._subscribed.clear()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)  # type: ignore[no-untyped-call]
                await self._close_node()
            await asyncio.sleep(RECONNECT_DELAY)

    async def _pubsub(self) -> PubSub:
        """A PubSub of the client, or on a cluster of a client of the master that owns the
        channel's slot, as the cluster says now (not as it was before a failover)."""
        if not isinstance(self._r, RedisCluster):
            return self._r.pubsub()
        await self._r.aclose()  # forget the layout: the next command asks the cluster again
        await self._r.initialize()
        node = self._r.get_node_from_key(FANOUT_CHANNEL)
        if node is None:
            raise redis.exceptions.ConnectionError("no node owns the fan-out channel")
        kwargs = node.connection_kwargs
        self._node = Redis(
            host=node.host, port=node.port, username=kwargs.get("username"),
            password=kwargs.get("password"), socket_connect_timeout=self._interval * 2,
        )  # fmt: skip
        return self._node.pubsub()

    async def _close_node(self) -> None:
        if self._node is not None:
            with contextlib.suppress(Exception):
                await self._node.aclose()
            self._node = None

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribe and wait for Redis to confirm, so `on_gap` runs only once we hear again."""
        loop = asyncio.get_running_loop()
        subscribe = pubsub.ssubscribe if self._sharded else pubsub.subscribe
        await asyncio.wait_for(subscribe(FANOUT_CHANNEL), 2 * self._interval)
        deadline = loop.time() + 2 * self._interval
        while loop.time() < deadline:
            message = await pubsub.get_message(timeout=deadline - loop.time())
            if message is not None and message["type"] in ("subscribe", "ssubscribe"):
                self._last_heard = loop.time()
                self._subscribed.set()
                return
        raise Deaf("no subscribe confirmation")

    async def _listen(self, pubsub: PubSub) -> None:
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + self._interval
        while True:
            message = await pubsub.get_message(timeout=self._interval / 10)
            now = loop.time()
            if message is not None:
                self._last_heard = now
                if message["type"] in ("message", "smessage"):
                    try:
                        self._handler(decode(message["data"]))
                    except Exception:
                        log.exception("dropping an undecodable fanout")
            if now >= next_ping:
                await pubsub.ping()
                next_ping = now + self._interval
            if now - self._last_heard > DEAF_AFTER * self._interval:
                raise Deaf(f"nothing heard for {now - self._last_heard:.2f}s")
