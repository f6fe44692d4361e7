"""The redis engine's Lua scripts: every key they touch comes in KEYS, and a script that fails
writes nothing. A real redis-server; the failure is a key of the wrong type planted in it."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio

from rtt.domain.events import Event
from rtt.domain.messages import new_message
from rtt.domain.push import PushEntry
from rtt.engines.redis import keys, redis_engine
from rtt.engines.redis.scripts import LUA
from rtt.engines.redis.store import RedisStore
from rtt.protocol import data_fields, spliced_frame, whole_frame

APP = "app"
SYSTEM = {"id": None, "name": "Admin"}
FRAME = whole_frame("messaging", "INCOMING", {})


@pytest.fixture
async def store(clean_redis: str) -> AsyncIterator[RedisStore]:
    engine = redis_engine(
        clean_redis, timeout=2.0, probe_interval=0.2, presence_ttl=1.0,
        stream_max_items=10, stream_max_seconds=3600,
    )  # fmt: skip
    await engine.store.start()
    assert isinstance(engine.store, RedisStore)
    try:
        yield engine.store
    finally:
        await engine.close()


@pytest.fixture
async def admin(clean_redis: str) -> AsyncIterator[redis.asyncio.Redis]:
    async with redis.asyncio.Redis.from_url(clean_redis) as r:
        yield r


async def _snapshot(r: redis.asyncio.Redis) -> dict[bytes, bytes]:
    """Every key and its serialized value: equal snapshots mean nothing was written."""
    return {key: await r.dump(key) async for key in r.scan_iter()}


async def _send(store: RedisStore, to: list[str], sent_by: str | None = None) -> str:
    message = new_message(SYSTEM, to, orjson.dumps({"t": 1}), int(time.time() * 1000))
    pushes = [PushEntry(p, "message", message.msg_id, "Admin", "t", b"{}", 1) for p in to]
    await store.append_message(APP, message, to, sent_by, FRAME, [b""] * len(to), pushes)
    return message.msg_id


async def _refused_whole(admin: redis.asyncio.Redis, write) -> None:
    before = await _snapshot(admin)
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        await write
    assert await _snapshot(admin) == before


async def test_a_send_that_fails_midway_writes_nothing(store, admin):
    """Pins: append_message wrote the message, the frame and the first recipients' seq, stream
    and box before a later recipient's key failed, and Redis does not roll a script back."""
    await _send(store, ["a"])
    await admin.set(keys.box(APP, "z"), "not a hash")
    message = new_message(SYSTEM, ["a", "z"], b"{}", 1)
    await _refused_whole(
        admin, store.append_message(APP, message, ["a", "z"], "s", FRAME, [b"", b""], [])
    )


async def test_events_that_fail_midway_write_nothing(store, admin):
    """Pins: append_events gave the first recipients their event and seq before a later
    recipient's key failed."""
    await admin.rpush(keys.event_order(APP, "z"), "not a zset")
    events = [Event(f"e-{p}", "t", None, p, 5, b"{}") for p in ("a", "z")]
    frame = spliced_frame("event", "GET_EVENTS", {"eventType": "t"})
    mids = [data_fields({"evId": e.ev_id}) for e in events]
    await _refused_whole(admin, store.append_events(APP, events, frame, mids, []))


async def test_an_update_or_delete_that_fails_midway_writes_nothing(store, admin):
    """Pins: change_message bumped the message and the first holders' seqs before a later
    holder's stream turned out to be of the wrong type."""
    msg_id = await _send(store, ["a", "z"])
    await admin.delete(keys.stream(APP, "z"))
    await admin.set(keys.stream(APP, "z"), "not a zset")
    update = store.update_message(APP, msg_id, 1, b"{}", 2, FRAME)
    await _refused_whole(admin, update)
    await _refused_whole(admin, store.delete_message(APP, msg_id, 1, FRAME))


async def test_a_box_delete_that_fails_midway_writes_nothing(store, admin):
    """Pins: box_entries deleted the first entries before a later message's holders set
    turned out to be of the wrong type."""
    first, second = await _send(store, ["a"]), await _send(store, ["a"])
    await admin.delete(keys.holders(APP, second))
    await admin.set(keys.holders(APP, second), "not a set")
    await _refused_whole(admin, store.delete_entries(APP, "a", "inbox", [first, second]))


def _key_arguments(source: str) -> list[str]:
    """The key argument of every redis.call / need / need_counter in a script."""
    return re.findall(
        r'(?:redis\.call\("[A-Z]+",\s*(?:"[A-Z]+",)?|need(?:_counter)?\()\s*([^,)]+)', source
    )


@pytest.mark.parametrize("script", sorted(p.name for p in LUA.glob("*.lua") if p.stem[0] != "_"))
def test_every_key_a_script_touches_comes_in_keys(script: str):
    """Pins: the append scripts built each recipient's key names from a prefix in ARGV, keys
    Redis Cluster cannot route and a reader of KEYS cannot see."""
    source = (Path(LUA) / script).read_text()
    arguments = _key_arguments(source)
    assert arguments
    assert [a for a in arguments if not a.startswith("KEYS[") and a != "key"] == []
