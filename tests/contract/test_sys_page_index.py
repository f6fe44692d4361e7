"""Sys paging on the redis engine reads one page through the app's message indexes: its cost
does not grow with the app's messages, and its results are the local engine's (SQL) results.
A real redis-server; the cost is counted with INFO commandstats."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio

from rtt.domain.messages import Message, new_message
from rtt.domain.paging import Query, decode_context, page_result, parse_context
from rtt.engines.base import Engine
from rtt.engines.local import local_engine
from rtt.engines.redis import redis_engine
from rtt.protocol import whole_frame

APP = "app"
SYSTEM = {"id": None, "name": "Admin"}
BUDGET = 256 * 1024
FRAME = whole_frame("messaging", "INCOMING", {})


async def _started(engine: Engine) -> Engine:
    await engine.start(lambda fanout: None, lambda: None)
    return engine


def _redis(url: str, **options: Any) -> Engine:
    return redis_engine(
        url,
        timeout=5.0,
        probe_interval=0.2,
        presence_ttl=1.0,
        stream_max_items=5,
        stream_max_seconds=3600,
        **options,
    )


@pytest.fixture
async def engines(tmp_path: Path, clean_redis: str) -> AsyncIterator[tuple[Engine, Engine]]:
    local = await _started(
        local_engine(tmp_path / "s.db", stream_max_items=5, stream_max_seconds=3600)
    )
    remote = await _started(_redis(clean_redis))
    try:
        yield local, remote
    finally:
        await local.close()
        await remote.close()


async def _fill(engines: tuple[Engine, ...], count: int, base: int) -> list[Message]:
    """`count` messages in both engines, a few per millisecond (ties in msgCr), to p0..p4."""
    messages = [
        new_message(
            {"id": f"s{n % 3}", "name": "s"} if n % 4 else SYSTEM,
            [f"p{n % 5}", f"p{(n + 1) % 5}"],
            orjson.dumps({"n": n}),
            base + n // 3,
        )
        for n in range(count)
    ]
    for engine in engines:
        for start in range(0, count, 200):
            await asyncio.gather(
                *(
                    engine.store.append_message(APP, m, m.to, None, FRAME, [b"", b""], [])
                    for m in messages[start : start + 200]
                )
            )
    return messages


async def _commands(url: str) -> int:
    """Commands the server has run so far (those inside scripts included)."""
    async with redis.asyncio.Redis.from_url(url) as r:
        stats = await r.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


async def _page_cost(engine: Engine, url: str, q: Query) -> tuple[int, int]:
    """(commands one page read ran, items it returned)."""
    before = await _commands(url)
    _, items = await engine.store.page(APP, None, q, BUDGET)
    return await _commands(url) - before - 1, len(items)  # less the INFO itself


QUERIES: list[dict[str, Any]] = [
    {},
    {"sortCriteria": {"msgCr": 1}, "pagination": {"rowsPerPage": 20, "pageNumber": 3}},
    {"sortCriteria": {"msgUp": -1}},
    {"searchCriteria": {"msgCr": {"$gte": 10, "$lte": 10**15}}},
]


async def test_a_sys_page_costs_the_same_with_10x_the_messages(engines, clean_redis):
    """Pins: a Sys page on redis read every message of the app (ZSCAN of the whole index and a
    metadata read per message), so its cost grew with the app: now a page runs the same
    number of commands with 200 or 2 000 messages in the app."""
    _, remote = engines
    now = int(time.time() * 1000)
    await _fill((remote,), 200, now)
    small = [await _page_cost(remote, clean_redis, parse_context("sys", c)) for c in QUERIES]
    await _fill((remote,), 1800, now + 1000)
    large = [await _page_cost(remote, clean_redis, parse_context("sys", c)) for c in QUERIES]
    for (cost_small, n_small), (cost_large, n_large) in zip(small, large, strict=True):
        assert n_small == n_large > 0
        assert cost_large <= cost_small + 2, (small, large)
        assert cost_large < 12 * n_large  # a few commands per item of the page, no more


def _ids(result: list[Message]) -> list[str]:
    return [m.msg_id for m in result]


CRITERIA: list[dict[str, Any]] = [
    {},
    {"sortCriteria": {"msgCr": 1}},
    {"sortCriteria": {"msgUp": 1}},
    {"sortCriteria": {"msgUp": -1, "msgCr": 1}},
    {"searchCriteria": {"msgCr": {"$gte": 0}}, "sortCriteria": {"msgCr": -1}},
    {"searchCriteria": {"msgUp": {"$lte": 0}}, "sortCriteria": {"msgUp": 1}},
    {"searchCriteria": {"msgCr": {"$gte": 0, "$lte": 0}}, "sortCriteria": {"msgUp": -1}},
    {"searchCriteria": {"message.from.id": "s1"}},
    {"searchCriteria": {"message.from.id": None, "msgCr": {"$lte": 0}}},
    {"searchCriteria": {"message.to": {"$in": ["p1", "p3"]}}, "sortCriteria": {"msgCr": 1}},
]


def _at(criteria: dict[str, Any], base: int) -> dict[str, Any]:
    """The criteria with their times (0 = somewhere in the middle of the data) made real."""
    search = {
        field: (
            {op: base + 20 for op in cond} if isinstance(cond, dict) and field[:3] == "msg" and
            field != "message.to" else cond
        )
        for field, cond in criteria.get("searchCriteria", {}).items()
    }  # fmt: skip
    return {**criteria, "searchCriteria": search, "pagination": {"rowsPerPage": 7}}


async def test_sys_pages_through_the_index_match_the_local_engine(engines):
    """Pins: reading through the index keeps every result as it was: the same count, items and
    order (ties in msgId order) as SQL on the local engine, for every sort and filter, on every
    page forward and back, after updates (msgUp moves) and deletes."""
    local, remote = engines
    base = int(time.time() * 1000)
    messages = await _fill((local, remote), 90, base)
    rng = random.Random(9)
    for m in rng.sample(messages, 20):
        up = base + rng.randrange(60)
        for engine in (local, remote):
            await engine.store.update_message(APP, m.msg_id, 1, b"{}", up, FRAME)
    for m in rng.sample(messages, 10):
        for engine in (local, remote):
            try:
                await engine.store.delete_message(APP, m.msg_id, 1, FRAME)
            except Exception:  # updated above: its version is 2
                await engine.store.delete_message(APP, m.msg_id, 2, FRAME)
    for criteria in CRITERIA:
        context = _at(criteria, base)
        pages = {}
        for name, engine in (("local", local), ("redis", remote)):
            q = parse_context("sys", context)
            seen = []
            while True:
                count, items = await engine.store.page(APP, None, q, BUDGET)
                seen.append((count, _ids(items)))
                result = page_result(q, count, items)["results"]
                if not result["moreAfter"]:
                    break
                q = decode_context("sys", page_result(q, count, items)["context"], 1)
            if q.page > 1:
                back = decode_context("sys", page_result(q, count, items)["context"], -1)
                count, items = await engine.store.page(APP, None, back, BUDGET)
                seen.append((count, _ids(items)))
            pages[name] = seen
        assert pages["redis"] == pages["local"], criteria


async def test_an_unindexed_filter_examines_at_most_the_cap(clean_redis):
    """Pins: a criterion the index cannot answer (`message.to`) examined every message of the
    app; now a page examines at most RTT_SYS_SCAN_MAX index entries, and then reports an upper
    bound count so `moreAfter` says more may follow."""
    remote = await _started(_redis(clean_redis, sys_scan_max=256))  # RTT_SYS_SCAN_MAX
    try:
        await _check_capped_page(remote, clean_redis)
    finally:
        await remote.close()


async def _check_capped_page(remote: Engine, clean_redis: str) -> None:
    await _fill((remote,), 1000, int(time.time() * 1000))
    q = parse_context("sys", {"searchCriteria": {"message.to": {"$in": ["p0"]}}})
    cost, returned = await _page_cost(remote, clean_redis, q)
    count, items = await remote.store.page(APP, None, q, BUDGET)
    assert returned == len(items) == 10
    # about 2 in 5 of the examined go to p0; the 744 not examined are counted as if they did
    assert 744 + 80 < count < 744 + 125
    assert page_result(q, count, items)["results"]["moreAfter"]
    assert cost < 256 * 6  # ~4 commands per examined entry, not 1000 entries' worth
