"""SystemChannel, one contract for both engines: nonces expire and are bounded, the rate
bucket refuses whole and allows debt for a send above one second's worth, senders are bounded,
and push entries queued alone land in the outbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from rtt.domain.push import PushEntry
from rtt.engines.base import Engine, NonceClaim
from rtt.engines.local import local_engine
from rtt.engines.redis import redis_engine
from tests.contract.test_engine_contract import ENGINES, redis_for

APP = "app"


@pytest.fixture(params=ENGINES)
async def engine(request, tmp_path) -> AsyncIterator[Engine]:
    if request.param == "local":
        built = local_engine(tmp_path / "c.db", stream_max_items=10, stream_max_seconds=3600)
    else:
        built = redis_engine(
            redis_for(request, request.param), cluster=request.param == "redis-cluster",
            timeout=2.0, probe_interval=0.2, presence_ttl=1.0,
            stream_max_items=10, stream_max_seconds=3600,
        )  # fmt: skip
    await built.start(lambda fanout: None, lambda: None)
    try:
        yield built
    finally:
        await built.close()


async def test_a_nonce_is_fresh_once_then_replayed_until_it_expires(engine):
    channel = engine.channel
    assert await channel.claim_nonce(APP, "n", 0.3, 10) is NonceClaim.FRESH
    assert await channel.claim_nonce(APP, "n", 0.3, 10) is NonceClaim.REPLAYED
    assert await channel.claim_nonce("other", "n", 0.3, 10) is NonceClaim.FRESH
    await asyncio.sleep(0.45)
    assert await channel.claim_nonce(APP, "n", 0.3, 10) is NonceClaim.FRESH


async def test_live_nonces_are_bounded_and_free_as_they_expire(engine):
    channel = engine.channel
    assert await channel.claim_nonce(APP, "a", 0.3, 2) is NonceClaim.FRESH
    assert await channel.claim_nonce(APP, "b", 0.3, 2) is NonceClaim.FRESH
    assert await channel.claim_nonce(APP, "c", 0.3, 2) is NonceClaim.FULL
    await asyncio.sleep(0.45)
    assert await channel.claim_nonce(APP, "c", 0.3, 2) is NonceClaim.FRESH


async def test_the_bucket_refuses_whole_and_a_big_send_leaves_it_in_debt(engine):
    channel = engine.channel
    assert await channel.take_rate(APP, 8, 10)
    assert not await channel.take_rate(APP, 5, 10)  # 2 left: nothing taken
    assert await channel.take_rate(APP, 2, 10)
    await asyncio.sleep(1.05)  # full again
    assert await channel.take_rate(APP, 25, 10)  # above one second's worth: passes, owes 15
    await asyncio.sleep(1.05)
    assert not await channel.take_rate(APP, 1, 10)  # still repaying (about -5)


async def test_senders_are_recorded_within_their_bound(engine):
    channel = engine.channel
    assert await channel.add_sender(APP, "s1", 2)
    assert await channel.add_sender(APP, "s1", 2)
    assert await channel.add_sender(APP, "s2", 2)
    assert not await channel.add_sender(APP, "s3", 2)
    assert await channel.senders_among(APP, ["s1", "s3", "x"]) == {"s1"}
    assert await channel.senders_among("other", ["s1"]) == set()


async def test_pushes_queued_alone_are_in_the_outbox(engine):
    pushes = [PushEntry(p, "system", "uid", "t", "b", b'{"k":1}', 5) for p in ("a", "b")]
    await engine.channel.queue_pushes(APP, pushes)
    found, more = await engine.outbox.pending(APP, None, 10, None, 65536)
    assert [(e.profile, e.kind, e.body, e.data) for e in found] == [
        ("a", "system", "b", b'{"k":1}'),
        ("b", "system", "b", b'{"k":1}'),
    ]
    assert not more
