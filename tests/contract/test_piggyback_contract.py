"""EventPiggyback, one contract on both engines: events are taken in the order they were stored
(not their clocks), once per session, never after they are deleted or expired, within the
count and byte bounds, and a cursor lasts as long as its session is used."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rtt.domain.events import Event
from rtt.engines.base import Retention
from rtt.protocol import data_fields, spliced_frame
from tests.contract.test_engine_contract import APP, ENGINES, Running, _build, redis_for, started

pytestmark = pytest.mark.timeout(30)

TTL = 60.0
MANY = 100
BUDGET = 1024 * 1024


@pytest.fixture(params=ENGINES)
async def engine(request, tmp_path: Path) -> AsyncIterator[Running]:
    """An engine keeping events 5 s (so the sweep can expire some)."""
    retention = Retention(event_max_seconds=5)
    url = redis_for(request, request.param)
    built = _build(request.param, tmp_path, url, max_items=100, retention=retention)
    async with started(built) as state:
        yield state


async def store(running: Running, profile: str, ev_id: str, created_at: int, data: bytes = b"{}"):
    event = Event(ev_id, "t", None, profile, created_at, data)
    frame = spliced_frame("event", "GET_EVENTS", {"eventType": "t"})
    await running.store.append_events(APP, [event], frame, [data_fields({"evId": ev_id})], [])


async def take(running: Running, session: str, count: int = MANY, size: int = BUDGET, ttl=TTL):
    events = await running.engine.piggyback.take(APP, "p", session, count, size, ttl)
    return [e.ev_id for e in events]


async def test_events_are_taken_in_the_order_stored_once_per_session(engine):
    """Fails if events are taken by their clock (a later-stored event with an older createdAt,
    as another node's clock or a slow commit gives, would be skipped by a clock cursor), or if
    a session is handed an event twice, or one session's taking hides it from another."""
    now = int(time.time() * 1000)
    await store(engine, "p", "e1", now)
    await store(engine, "p", "e2", now - 1000)
    assert await take(engine, "s1") == ["e1", "e2"]
    await store(engine, "p", "e3", now - 2000)
    assert await take(engine, "s1") == ["e3"]
    assert await take(engine, "s1") == []
    assert await take(engine, "s2") == ["e1", "e2", "e3"]
    full = await engine.engine.piggyback.take(APP, "p", "s3", MANY, BUDGET, TTL)
    assert [(e.ev_id, e.to_id, e.data) for e in full] == [
        ("e1", "p", b"{}"), ("e2", "p", b"{}"), ("e3", "p", b"{}")
    ]  # fmt: skip


async def test_deleted_and_expired_events_are_never_taken(engine):
    """Fails if an event deleted by the client or by the sweep's age limit is still taken."""
    now = int(time.time() * 1000)
    await store(engine, "p", "old", now - 10_000)
    await store(engine, "p", "gone", now)
    await store(engine, "p", "kept", now)
    assert await engine.store.delete_events(APP, "p", ["gone"]) == 1
    await engine.store.sweep()
    assert await take(engine, "s") == ["kept"]


async def test_count_and_bytes_bound_one_take(engine):
    """Fails if a take returns more than `max_count` events or more than `max_bytes` (unless
    a single event), or skips the ones it left for the next take."""
    now = int(time.time() * 1000)
    for n in range(5):
        await store(engine, "p", f"e{n}", now, b'{"pad":"' + b"x" * 600 + b'"}')
    assert await take(engine, "s", count=2) == ["e0", "e1"]
    assert await take(engine, "s", size=100) == ["e2"]  # over the budget alone: still one
    assert await take(engine, "s", size=2 * 1300) == ["e3", "e4"]


async def test_a_cursor_lives_as_long_as_its_session_is_used(engine):
    """Fails if a cursor outlives its idle lifetime (cursors would pile up for every session
    ever opened) or is lost while the session keeps taking."""
    await store(engine, "p", "e1", int(time.time() * 1000))
    assert await take(engine, "s", ttl=0.6) == ["e1"]
    for _ in range(3):
        await asyncio.sleep(0.3)
        assert await take(engine, "s", ttl=0.6) == []
    await asyncio.sleep(1.3)  # past 2 x ttl, the most an engine may keep it
    assert await take(engine, "s", ttl=0.6) == ["e1"]  # a new session would start over
