"""The redis broker publishes a fan-out of more than SLICE targets as one message per SLICE
targets, so no node decodes or dispatches 100 000 targets in one piece; every target arrives
once, in order, with its seq and part. A real redis-server and two brokers (two nodes)."""

from __future__ import annotations

import asyncio

import pytest

from rtt.engines.base import Fanout
from rtt.engines.redis import redis_client
from rtt.engines.redis.broker import RedisBroker
from rtt.protocol import whole_frame
from rtt.slices import SLICE

pytestmark = pytest.mark.timeout(60)


async def test_a_large_fanout_arrives_in_pieces_of_at_most_slice_targets(clean_redis: str):
    """Fails if a large fan-out travels as one message, or a piece loses, repeats or reorders
    a target, its seq or its part; a small one is still a single message."""
    received: list[Fanout] = []
    sender = RedisBroker(redis_client(clean_redis, 5.0, 4), 0.5)
    receiver = RedisBroker(redis_client(clean_redis, 5.0, 4), 0.5)
    await sender.start(lambda fanout: None, lambda: None)
    await receiver.start(received.append, lambda: None)
    try:
        total = 2 * SLICE + 100
        profiles = [f"p{i}" for i in range(total)]
        parts = [b'"%d"' % i for i in range(total)]
        frame = whole_frame("messaging", "INCOMING", {"n": 1})
        await sender.publish(Fanout("demo", frame, profiles, list(range(1, total + 1)), parts))
        await sender.publish(Fanout("demo", frame, ["small"], [7], [b""]))
        async with asyncio.timeout(10):
            while len(received) < 4:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert [len(f.profiles) for f in received] == [SLICE, SLICE, 100, 1]
        large = received[:3]
        assert [p for f in large for p in f.profiles] == profiles
        assert [s for f in large for s in f.seqs] == list(range(1, total + 1))
        assert [p for f in large for p in f.parts] == parts
        assert all(f.frame.head + f.frame.tail == frame.head + frame.tail for f in received)
        assert (received[3].profiles, received[3].seqs) == (["small"], [7])
    finally:
        await sender.close()
        await receiver.close()
