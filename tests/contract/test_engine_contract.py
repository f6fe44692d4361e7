"""One contract, every engine: each test runs against `local` (SQLite), `redis` and
`redis-cluster` (a real 3-master Redis Cluster, writes split per slot) alike."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from rtt.domain.events import Event
from rtt.domain.messages import new_message
from rtt.domain.paging import decode_context, page_result, parse_context
from rtt.domain.push import PushEntry
from rtt.engines.base import (
    DEFAULT_RETENTION,
    ClaimState,
    Engine,
    Fanout,
    MessageNotFound,
    Retention,
    S2SSession,
    VersionMismatch,
)
from rtt.engines.local import local_engine
from rtt.engines.redis import redis_engine
from rtt.protocol import SLOT, data_fields, slotted_frame, spliced_frame, whole_frame
from rtt.slices import SLICE

APP = "app"
SYSTEM = {"id": None, "name": "Admin"}
BUDGET = 256 * 1024


class Running:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.fanouts: list[Fanout] = []
        self.gaps = 0

    def on_gap(self) -> None:
        self.gaps += 1


ENGINES = ["local", "redis", "redis-cluster"]


def redis_for(request: pytest.FixtureRequest, kind: str) -> str:
    """The emptied Redis (or Redis Cluster seed) URL an engine of `kind` runs on."""
    return str(
        request.getfixturevalue("clean_cluster" if kind == "redis-cluster" else "clean_redis")
    )


def _build(
    kind: str,
    tmp_path: Path,
    redis_url: str,
    max_items: int,
    retention: Retention = DEFAULT_RETENTION,
) -> Engine:
    if kind == "local":
        return local_engine(
            tmp_path / "c.db", stream_max_items=max_items, stream_max_seconds=3600,
            retention=retention,
        )  # fmt: skip
    return redis_engine(
        redis_url,
        cluster=kind == "redis-cluster",
        replicas=1 if kind == "redis-cluster" else 0,  # a write is on a replica when acked
        timeout=2.0,
        probe_interval=0.2,
        presence_ttl=1.0,
        stream_max_items=max_items,
        stream_max_seconds=3600,
        retention=retention,
    )


@contextlib.asynccontextmanager
async def started(engine: Engine) -> AsyncIterator[Running]:
    """`engine` started, with its fanouts and gaps recorded; closed on the way out."""
    state = Running(engine)
    await engine.start(state.fanouts.append, state.on_gap)
    try:
        yield state
    finally:
        await engine.close()


@pytest.fixture(params=ENGINES)
async def running(request, tmp_path) -> AsyncIterator[Running]:
    url = redis_for(request, request.param)
    async with started(_build(request.param, tmp_path, url, max_items=3)) as state:
        yield state


async def _entries(store, app, profile, box, ids, mark):
    """The entries of get_entries (the contract of the missing ids is tested on its own)."""
    entries, _ = await store.get_entries(app, profile, box, ids, mark, BUDGET)
    return entries


async def _send(r: Running, to: list[str], text: str = "hi", sent_by: str | None = None):
    sender = SYSTEM if sent_by is None else {"id": sent_by, "name": sent_by}
    message = new_message(sender, to, orjson.dumps({"text": text}), int(time.time() * 1000))
    frame = whole_frame("messaging", "INCOMING", {"msgId": message.msg_id})
    pushes = [
        PushEntry(p, "message", message.msg_id, "Admin", text, b"{}", message.msg_cr) for p in to
    ]
    seqs = await r.store.append_message(APP, message, to, sent_by, frame, [b""] * len(to), pushes)
    return message, frame, seqs


async def test_seq_is_gap_free_per_profile_and_replayable(running):
    """Every append gives each recipient the next seq, and replay returns the same bytes."""
    _, frame1, seqs1 = await _send(running, ["a", "b"])
    _, frame2, seqs2 = await _send(running, ["b"])
    assert seqs1 == [1, 1] and seqs2 == [2]
    assert await running.store.latest_seq(APP, "b") == 2
    assert await running.store.stream_since(APP, "b", 0, 10) == [
        (1, frame1.render(1)),
        (2, frame2.render(2)),
    ]
    assert await running.store.stream_since(APP, "b", 1, 10) == [(2, frame2.render(2))]
    assert await running.store.stream_since(APP, "b", 2, 10) == []
    assert await running.store.stream_since(APP, "nobody", 0, 10) == []


async def test_cursor_from_the_future_or_past_retention_needs_resync(running):
    """A cursor beyond the latest seq, or before what is kept, must answer None (RESYNC)."""
    for _ in range(5):
        await _send(running, ["a"])
    assert await running.store.stream_since(APP, "a", 9, 10) is None
    await running.store.sweep()  # keeps the last 3 items per profile
    assert await running.store.stream_since(APP, "a", 0, 10) is None
    kept = await running.store.stream_since(APP, "a", 2, 10)
    assert [seq for seq, _ in kept] == [3, 4, 5]


async def test_boxes_counts_read_and_delete(running):
    """Inbox/sent entries, unread counts, mark-read and per-profile delete behave alike."""
    m1, _, _ = await _send(running, ["a", "b"], sent_by="s")
    m2, _, _ = await _send(running, ["a"])
    store = running.store
    assert await store.counts(APP, "a") == {
        "inbox": {"total": 2, "unread": 2},
        "sent": {"total": 0, "unread": 0},
    }
    assert (await store.counts(APP, "s"))["sent"] == {"total": 1, "unread": 0}
    assert await store.mark_read(APP, "a", "inbox", [m1.msg_id, "nope"], 5) == 1
    assert await store.mark_read(APP, "a", "inbox", [m1.msg_id], 6) == 1
    [entry] = await _entries(store, APP, "a", "inbox", [m1.msg_id], None)
    assert entry.read and entry.mb_ver == 2 and entry.mb_up == 5
    [fresh] = await _entries(store, APP, "a", "inbox", [m2.msg_id], 9)
    assert fresh.read and fresh.mb_up == 9
    assert await store.delete_entries(APP, "a", "inbox", [m1.msg_id, "nope"]) == 1
    assert await _entries(store, APP, "a", "inbox", [m1.msg_id], None) == []
    [still] = await _entries(store, APP, "b", "inbox", [m1.msg_id], None)
    assert still.message.content == b'{"text":"hi"}'


async def test_update_is_compare_and_set_and_reaches_every_holder(running):
    """A stale version is refused; a good one bumps msgVer and gives each holder a seq."""
    m, _, _ = await _send(running, ["a", "b"], sent_by="s")
    frame = whole_frame("messaging", "UPDATED", {"msgId": m.msg_id})
    with pytest.raises(VersionMismatch):
        await running.store.update_message(APP, m.msg_id, 7, b"{}", 1, frame)
    with pytest.raises(MessageNotFound):
        await running.store.update_message(APP, "missing", 1, b"{}", 1, frame)
    targets = await running.store.update_message(APP, m.msg_id, 1, b'{"v":2}', 123, frame)
    assert sorted(targets) == [("a", 2), ("b", 2), ("s", 1)]
    [stored] = (await running.store.get_messages(APP, [m.msg_id], BUDGET))[0]
    assert (stored.msg_ver, stored.msg_up, stored.content) == (2, 123, b'{"v":2}')


async def test_delete_removes_every_box_entry(running):
    """A sys delete leaves no box entry anywhere and notifies every holder."""
    m, _, _ = await _send(running, ["a", "b"])
    await running.store.delete_entries(APP, "b", "inbox", [m.msg_id])
    frame = whole_frame("messaging", "DELETED", {"msgId": m.msg_id})
    with pytest.raises(VersionMismatch):
        await running.store.delete_message(APP, m.msg_id, 2, frame)
    assert await running.store.delete_message(APP, m.msg_id, 1, frame) == [("a", 2)]
    assert (await running.store.get_messages(APP, [m.msg_id], BUDGET))[0] == []
    assert (await running.store.counts(APP, "a"))["inbox"]["total"] == 0
    with pytest.raises(MessageNotFound):
        await running.store.delete_message(APP, m.msg_id, 1, frame)


async def test_events_store_per_recipient(running):
    """Each recipient keeps its own event until it deletes it; frames carry its own evId."""
    events = [Event(f"e-{p}", "t", None, p, 5, b'{"k":1}') for p in ("a", "b")]
    frame = spliced_frame("event", "GET_EVENTS", {"eventType": "t"})
    mids = [data_fields({"evId": e.ev_id}) for e in events]
    assert await running.store.append_events(APP, events, frame, mids, []) == [1, 1]
    [(_, raw)] = await running.store.stream_since(APP, "b", 0, 10)
    assert orjson.loads(raw)["data"] == {"evId": "e-b", "eventType": "t"}
    [mine] = (await running.store.get_events(APP, "a", None, BUDGET))[0]
    assert (mine.ev_id, mine.to_id, mine.data) == ("e-a", "a", b'{"k":1}')
    assert await running.store.delete_events(APP, "a", ["e-a", "zzz"]) == 1
    assert (await running.store.get_events(APP, "a", None, BUDGET))[0] == []
    assert len((await running.store.get_events(APP, "b", None, BUDGET))[0]) == 1


async def test_paging_filters_and_sorts_alike(running):
    """Both engines answer the same query with the same page."""
    sent = []
    for i in range(5):
        m, _, _ = await _send(running, ["a", f"x{i}"], text=str(i))
        sent.append(m.msg_id)
        await asyncio.sleep(0.002)
    await running.store.mark_read(APP, "a", "inbox", sent[:2], 1)
    query = parse_context(
        "box",
        {
            "pagination": {"rowsPerPage": 2, "pageNumber": 1},
            "searchCriteria": {"read": False, "message.from.id": None},
            "sortCriteria": {"mbCr": 1},
        },
    )
    count, items = await running.store.page(APP, "a", query, BUDGET)
    assert count == 3 and [e.message.msg_id for e in items] == sent[2:4]
    sys_query = parse_context("sys", {"searchCriteria": {"message.to": {"$in": ["x1", "x3"]}}})
    count, messages = await running.store.page(APP, None, sys_query, BUDGET)
    assert count == 2 and [m.msg_id for m in messages] == [sent[3], sent[1]]


async def test_push_outbox_is_oldest_first_and_filterable(running):
    """Entries come back in the order they were written, optionally for one profile."""
    await _send(running, ["a", "b"], text="one")
    await _send(running, ["a"], text="two")
    everything, more = await running.engine.outbox.pending(APP, None, 10, None, BUDGET)
    assert [(p.profile, p.body) for p in everything] == [("a", "one"), ("b", "one"), ("a", "two")]
    assert not more
    mine, _ = await running.engine.outbox.pending(APP, "a", 10, None, BUDGET)
    assert [p.body for p in mine] == ["one", "two"]
    first, more = await running.engine.outbox.pending(APP, None, 2, None, BUDGET)
    assert len(first) == 2 and more
    rest, more = await running.engine.outbox.pending(APP, None, 2, first[-1].push_id, BUDGET)
    assert [(p.profile, p.body) for p in rest] == [("a", "two")] and not more
    assert all(p.push_id for p in everything)


async def test_push_entries_come_back_exactly_as_written(running):
    """Pins the redis engine's grouped push argument (a send's entries share every field but
    the profile, sent once): entries of one send over more than a slice, and entries that
    differ in more than the profile, all read back field for field, in order."""
    message = new_message(SYSTEM, ["x"], b"{}", 1)
    frame = whole_frame("messaging", "INCOMING", {"msgId": message.msg_id})
    to = [f"p{i}" for i in range(SLICE + 5)] + ['q,"1']
    same = [PushEntry(p, "message", "m1", "T", 'b"x', b'{"k":1}', 7) for p in to]
    await running.store.append_message(APP, message, to, None, frame, [b""] * len(to), same)
    mixed = [
        PushEntry("e1", "event", "ev1", "kind", "", b"{}", 8),
        PushEntry("e2", "event", "ev2", "kind", "", b"[]", 9),
    ]
    await running.engine.channel.queue_pushes(APP, mixed)
    written = same + mixed
    read, after, more = [], None, True
    while more:
        page, more = await running.engine.outbox.pending(APP, None, 1000, after, 1 << 30)
        read += page
        after = page[-1].push_id
    assert [p[:7] for p in read] == [p[:7] for p in written]


async def test_dead_letters_keep_the_newest_up_to_their_bound(running):
    """Fails if an app's dead letters grow past `keep` (RTT_PUSH_DEAD_LETTERS_MAX), or if the
    bound drops the newest rather than the oldest."""
    await _send(running, ["d1", "d2", "d3", "d4", "d5"])
    claimed = await running.engine.push.claim([APP], "w", 10, 60)
    entries = [c.entry for c in claimed]
    assert [e.profile for e in entries] == ["d1", "d2", "d3", "d4", "d5"]
    await running.engine.push.dead(APP, entries[:2], "first", 3)
    await running.engine.push.dead(APP, entries[2:], "second", 3)
    letters = await running.engine.push.dead_letters(APP, 10)
    assert [d["profileId"] for d in letters] == ["d3", "d4", "d5"]
    assert await running.engine.push.depth(APP) == 0


async def test_claims_and_s2s_sessions(running):
    """A key has one holder; its recorded answer, and sessions, come back as stored."""
    store = running.store
    assert await store.claim(APP, "k", b"fp", "t1", 60) == (ClaimState.OWNED, None)
    assert await store.claim(APP, "k", b"fp", "t2", 60) == (ClaimState.PENDING, None)
    assert await store.claim(APP, "k", b"other", "t2", 60) == (ClaimState.CONFLICT, None)
    assert await store.claim(APP, "k", b"fp", "t1", 60) == (ClaimState.OWNED, None)  # renewal
    await store.settle(APP, "k", "t2", b"500{}", 60)  # not the holder: changes nothing
    await store.settle(APP, "k", "t1", b"200{}", 60)
    assert await store.claim(APP, "k", b"fp", "t3", 60) == (ClaimState.DONE, b"200{}")
    assert await store.claim(APP, "k", b"other", "t3", 60) == (ClaimState.CONFLICT, None)
    assert await store.claim(APP, "r", b"fp", "t1", 60) == (ClaimState.OWNED, None)
    await store.settle(APP, "r", "t1", None, 60)  # released: the next attempt runs
    assert await store.claim(APP, "r", b"fp", "t2", 60) == (ClaimState.OWNED, None)
    assert await store.claim(APP, "x", b"fp", "t1", 0.05) == (ClaimState.OWNED, None)
    await asyncio.sleep(0.1)  # a holder that stopped renewing frees the key
    assert await store.claim(APP, "x", b"fp", "t2", 60) == (ClaimState.OWNED, None)
    session = S2SSession("sid", APP, "backend", time.time() + 60, 3)
    await store.save_s2s_session(session)
    assert await store.get_s2s_session("sid") == session
    assert await store.get_s2s_session("other") is None


async def test_presence_and_broker(running):
    """Presence counts sessions; a published fanout reaches the subscriber intact."""
    presence = running.engine.presence
    await presence.join(APP, "a")
    await presence.join(APP, "a")
    await presence.leave(APP, "a")
    assert await presence.online(APP, ["a", "b"]) == {"a"}
    await presence.leave(APP, "a")
    assert await presence.online(APP, ["a"]) == set()
    frame = spliced_frame("event", "GET_EVENTS", {"x": 1})
    fanout = Fanout(APP, frame, ["a"], [4], [data_fields({"evId": "e"})])
    await running.engine.broker.publish(fanout)
    async with asyncio.timeout(5):
        while not running.fanouts:
            await asyncio.sleep(0.01)
    assert running.fanouts == [fanout]
    assert running.engine.broker.healthy()


async def test_epoch_is_stable_while_nothing_is_lost(running):
    """No spurious RESYNC: the epoch stays put across checks."""
    epoch = running.store.epoch
    await _send(running, ["a"])
    assert epoch and await running.store.check_epoch() is False
    assert running.store.epoch == epoch


async def test_redis_outbox_stream_has_its_consumer_group(tmp_path, clean_redis):
    """Dispatchers read with XREADGROUP: the group must exist from the first entry on."""
    import redis.asyncio

    from rtt.engines.redis import keys

    engine = _build("redis", tmp_path, clean_redis, max_items=10)
    state = Running(engine)
    await engine.start(state.fanouts.append, state.on_gap)
    try:
        await _send(state, ["a", "b"])
        async with redis.asyncio.Redis.from_url(clean_redis) as r:
            [group] = await r.xinfo_groups(keys.outbox(APP))
        assert group["name"] == keys.PUSH_GROUP.encode() and group["lag"] == 2
    finally:
        await engine.close()


async def test_per_recipient_part_is_kept_for_replay(running):
    """A slotted frame (each recipient sees itself in `to`) must replay with the same slot."""
    message = new_message(SYSTEM, ["a", "b"], b"{}", 1)
    frame = slotted_frame("messaging", "INCOMING", {"to": [SLOT]})
    mids = [orjson.dumps(p) for p in ("a", "b")]
    await running.store.append_message(APP, message, ["a", "b"], None, frame, mids, [])
    [(_, raw)] = await running.store.stream_since(APP, "b", 0, 10)
    assert orjson.loads(raw) == {
        "seq": 1,
        "service": "messaging",
        "operation": "INCOMING",
        "data": {"to": ["b"]},
    }


async def test_a_refused_append_leaves_no_trace_and_skips_no_seq(running):
    """Fails if a write that fails halfway keeps part of itself, or burns a seq (a gap that
    every client would then try to heal forever)."""
    message, _, _ = await _send(running, ["a"])
    frame = whole_frame("messaging", "INCOMING", {})
    with pytest.raises(Exception):  # noqa: B017 - each engine refuses a duplicate id its own way
        await running.store.append_message(APP, message, ["a", "b"], None, frame, [b"", b""], [])
    assert await running.store.latest_seq(APP, "b") == 0
    assert (await running.store.counts(APP, "b"))["inbox"]["total"] == 0
    _, _, seqs = await _send(running, ["a", "b"])
    assert seqs == [2, 1]


@pytest.mark.parametrize("kind", ENGINES)
async def test_boxes_and_streams_are_the_same_after_a_restart(kind, tmp_path, request):
    """Fails if a restarted node forgets a box entry, a read mark or a delete, loses a
    profile's stream position, or revives stream items the sweep had dropped (the local
    engine rebuilds its indexes from the file)."""
    url = redis_for(request, kind)
    engine = _build(kind, tmp_path, url, max_items=2)
    state = Running(engine)
    await engine.start(state.fanouts.append, state.on_gap)
    m1, _, _ = await _send(state, ["a", "b"], sent_by="s")
    m2, _, _ = await _send(state, ["a", "c"])
    await _send(state, ["a"])
    _, last_frame, _ = await _send(state, ["a"])
    await state.store.mark_read(APP, "a", "inbox", [m1.msg_id], 7)
    await state.store.delete_entries(APP, "b", "inbox", [m1.msg_id])
    await state.store.sweep()  # "a" keeps seqs 3-4; m2's frame stays for "c"
    before = (
        [await state.store.counts(APP, p) for p in ("a", "b", "c", "s")],
        await state.store.stream_since(APP, "a", 2, 10),
    )
    await engine.close()

    engine = _build(kind, tmp_path, url, max_items=2)
    state = Running(engine)
    await engine.start(state.fanouts.append, state.on_gap)
    try:
        after = (
            [await state.store.counts(APP, p) for p in ("a", "b", "c", "s")],
            await state.store.stream_since(APP, "a", 2, 10),
        )
        assert after == before
        assert [seq for seq, _ in after[1]] == [3, 4] and after[1][-1][1] == last_frame.render(4)
        assert await state.store.stream_since(APP, "a", 0, 10) is None
        [entry] = await _entries(state.store, APP, "a", "inbox", [m1.msg_id], None)
        assert entry.read and entry.mb_up == 7
        assert await _entries(state.store, APP, "b", "inbox", [m1.msg_id], None) == []
        assert [e.message.msg_id for e in (await _page(state, "c"))] == [m2.msg_id]
        _, _, seqs = await _send(state, ["a", "b", "c"])
        assert seqs == [5, 2, 2]
    finally:
        await engine.close()


async def _page(r: Running, profile: str) -> list:
    query = parse_context("box", {"pagination": {"rowsPerPage": 10, "pageNumber": 1}})
    _, entries = await r.store.page(APP, profile, query, BUDGET)
    return entries


# --- replies of many items are cut at a byte budget ------------------------------------------

CUT_BUDGET = 35_000  # three ~10 KB items fit, a fourth does not
BIG_TEXT = "x" * 10_000


def _bytes(items: list) -> int:
    return sum(len(orjson.dumps(item.item())) for item in items)


async def _walk(r: Running, profile: str | None, backward: bool = False) -> list[list[str]]:
    """Every page of the profile's box (or the Sys view) at CUT_BUDGET, moving from cursor to
    cursor as a client does: forward from the first page, or backward from past the last."""
    scope = "sys" if profile is None else "box"
    rows = {"pagination": {"rowsPerPage": 10, "pageNumber": 3 if backward else 1}}
    query = parse_context(scope, rows)
    pages: list[list[str]] = []
    while True:
        count, items = await r.store.page(APP, profile, query, CUT_BUDGET)
        assert _bytes(items) <= CUT_BUDGET
        result = page_result(query, count, [i.item() for i in items])
        if items:
            pages.append([i.item()["msgId"] for i in items])
        more = result["results"]["moreBefore" if backward else "moreAfter"]
        if not more:
            return pages
        query = decode_context(scope, result["context"], -1 if backward else 1)


async def test_pages_are_cut_at_the_budget_and_continue_without_skip_or_repeat(running):
    """Pins: a page of 10 rows of 10 KB messages is cut to what fits in the budget (3), and
    moving on from its cursor (forward, or backward from the end) reaches every message exactly
    once, in order, on a profile's box and on the Sys view alike."""
    sent = []
    for i in range(12):
        m, _, _ = await _send(running, ["a"], text=f"{i}{BIG_TEXT}")
        sent.append(m.msg_id)
        await asyncio.sleep(0.002)
    newest_first = sent[::-1]
    for profile in ("a", None):
        forward = await _walk(running, profile)
        assert [len(p) for p in forward] == [3, 3, 3, 3]
        assert [i for p in forward for i in p] == newest_first
        backward = await _walk(running, profile, backward=True)
        assert [i for p in reversed(backward) for i in p] == newest_first
        assert all(1 <= len(p) <= 3 for p in backward)


async def test_an_item_larger_than_the_budget_still_comes_alone(running):
    """Pins: a reader always progresses: an item over the budget is returned alone."""
    m, _, _ = await _send(running, ["a"], text="y" * 50_000)
    query = parse_context("box", {})
    count, items = await running.store.page(APP, "a", query, 16 * 1024)
    assert count == 1 and [e.message.msg_id for e in items] == [m.msg_id]
    found, more = await running.store.get_messages(APP, [m.msg_id], 16 * 1024)
    assert [x.msg_id for x in found] == [m.msg_id] and not more


async def test_reads_by_id_are_cut_at_the_budget_in_request_order(running):
    """Pins: SYS_GET_MESSAGES / GET_MESSAGES of many big messages return the leading ones that
    fit and say more were left out; ids not held are reported, whatever the cut."""
    ids = [(await _send(running, ["a"], text=f"{i}{BIG_TEXT}"))[0].msg_id for i in range(5)]
    asked = [ids[4], "missing", *ids[:4]]
    found, more = await running.store.get_messages(APP, asked, CUT_BUDGET)
    assert [m.msg_id for m in found] == [ids[4], ids[0], ids[1]] and more
    assert _bytes(found) <= CUT_BUDGET
    found, more = await running.store.get_messages(APP, ids[2:], CUT_BUDGET)
    assert [m.msg_id for m in found] == ids[2:] and not more
    entries, missing = await running.store.get_entries(APP, "a", "inbox", asked, 5, CUT_BUDGET)
    assert [e.message.msg_id for e in entries] == [ids[4], ids[0], ids[1]]
    assert missing == ["missing"] and _bytes(entries) <= CUT_BUDGET
    # every held entry was marked, not only those returned
    rest, _ = await running.store.get_entries(APP, "a", "inbox", ids[2:4], None, CUT_BUDGET)
    assert [e.read for e in rest] == [True, True]


async def test_events_are_cut_at_the_budget_and_continue_after_the_last(running):
    """Pins: GET_EVENTS of many big events returns the oldest that fit and continues right
    after the last one returned, reaching every event once, oldest first."""
    frame = spliced_frame("event", "GET_EVENTS", {"eventType": "t"})
    sent = []
    for i in range(7):
        event = Event(f"e{i}", "t", None, "a", 100 + i // 2, orjson.dumps({"b": BIG_TEXT}))
        await running.store.append_events(APP, [event], frame, [b""], [])
        sent.append(event.ev_id)
    seen: list[str] = []
    after = None
    while True:
        events, more = await running.store.get_events(APP, "a", after, CUT_BUDGET)
        assert 1 <= len(events) <= 3 and _bytes(events) <= CUT_BUDGET
        seen += [e.ev_id for e in events]
        if not more:
            break
        after = (events[-1].created_at, events[-1].ev_id)
    assert seen == sent


async def test_push_outbox_reads_are_cut_at_the_budget(running):
    """Pins: SYS_GET_PENDING of big entries returns the oldest that fit and continues after."""
    frame = spliced_frame("event", "GET_EVENTS", {"eventType": "t"})
    data = orjson.dumps({"b": BIG_TEXT})
    for i in range(5):
        event = Event(f"e{i}", "t", None, "a", 100 + i, data)
        push = PushEntry("a", "event", event.ev_id, "t", "", data, 100 + i)
        await running.store.append_events(APP, [event], frame, [b""], [push])
    seen: list[str] = []
    after = None
    while True:
        entries, more = await running.engine.outbox.pending(APP, "a", 100, after, CUT_BUDGET)
        assert 1 <= len(entries) <= 3 and _bytes(entries) <= CUT_BUDGET
        seen += [p.ref for p in entries]
        if not more:
            break
        after = entries[-1].push_id
    assert seen == [f"e{i}" for i in range(5)]


async def test_a_box_bigger_than_a_read_step_pages_as_one_sorted_list(running):
    """Pins: a box read a chunk at a time (more entries than one step holds) gives the count,
    filter and order one sorted list would, on every page."""
    frame = whole_frame("messaging", "INCOMING", {})
    created = {}
    for i in range(300):
        message = new_message(SYSTEM, ["a"], b'{"t":1}', 1_000 + (i * 7919) % 150)
        await running.store.append_message(APP, message, ["a"], None, frame, [b""], [])
        created[message.msg_id] = message.msg_cr
    read = list(created)[::3]
    await running.store.mark_read(APP, "a", "inbox", read, 5)
    unread = sorted((cr, i) for i, cr in created.items() if i not in set(read))
    for number, direction in ((1, 1), (3, 1), (2, -1)):
        context = {
            "pagination": {"rowsPerPage": 40, "pageNumber": number},
            "searchCriteria": {"read": False},
            "sortCriteria": {"mbCr": direction},
        }
        count, items = await running.store.page(APP, "a", parse_context("box", context), BUDGET)
        ordered = [i for _, i in sorted(unread, key=lambda p: (direction * p[0], p[1]))]
        assert count == 200
        assert [e.message.msg_id for e in items] == ordered[(number - 1) * 40 : number * 40]
    assert await running.store.counts(APP, "a") == {
        "inbox": {"total": 300, "unread": 200},
        "sent": {"total": 0, "unread": 0},
    }


async def test_replay_reads_can_be_cut_at_a_byte_budget(running):
    """Pins: a replay batch of big frames can be bounded in bytes (the session's hook for a
    resume that must not read 500 frames of 128 KB at once): it stops at the budget, at least
    one frame, and continuing from its last seq gives the same frames as one uncut read."""
    for i in range(3):  # what the fixture's streams keep
        message = new_message(SYSTEM, ["a"], b"{}", 1)
        frame = whole_frame("messaging", "INCOMING", {"i": i, "text": BIG_TEXT})
        await running.store.append_message(APP, message, ["a"], None, frame, [b""], [])
    whole = await running.store.stream_since(APP, "a", 0, 100)
    assert whole is not None and len(whole) == 3
    budget = 25_000  # two frames of 10 KB fit, three do not
    first = await running.store.stream_since(APP, "a", 0, 100, budget)
    rest = await running.store.stream_since(APP, "a", 2, 100, budget)
    assert first is not None and rest is not None
    assert [len(first), len(rest)] == [2, 1] and first + rest == whole
    assert sum(len(frame) for _, frame in first) <= budget
    [(seq, _)] = await running.store.stream_since(APP, "a", 1, 100, 100)  # one, however small
    assert seq == 2


async def test_apps_and_profiles_never_share_state_whatever_they_contain(running):
    """Pins: Redis keys joined app and profile with `:` unescaped, so app `a` + profile `b:c`
    and app `a:b` + profile `c` shared one seq, stream and box."""
    store = running.store
    message = new_message(SYSTEM, ["b:c"], b"{}", 1)
    frame = whole_frame("messaging", "INCOMING", {})
    assert await store.append_message("a", message, ["b:c"], None, frame, [b""], []) == [1]
    other = new_message(SYSTEM, ["c"], b"{}", 1)
    assert await store.append_message("a:b", other, ["c"], None, frame, [b""], []) == [1]
    assert (await store.counts("a:b", "c"))["inbox"]["total"] == 1
    assert (await store.counts("a", "b:c"))["inbox"]["total"] == 1
    for app, profile in (("a", "b}:c"), ("a:b}", "c"), ("a", "b:c}:seq")):
        assert await store.latest_seq(app, profile) == 0


@pytest.fixture(params=ENGINES)
async def retained(request, tmp_path) -> AsyncIterator[Running]:
    """An engine keeping events 5 s and at most 3 push entries per app, each 0.5 s."""
    retention = Retention(event_max_seconds=5, outbox_max_entries=3, outbox_max_seconds=0.5)
    url = redis_for(request, request.param)
    engine = _build(request.param, tmp_path, url, max_items=100, retention=retention)
    async with started(engine) as state:
        yield state


async def test_the_sweep_deletes_events_past_their_age(retained):
    """Pins: events never expired: GET_EVENTS returned every event ever sent to a profile."""
    now = int(time.time() * 1000)
    events = [
        Event("old", "t", None, "a", now - 10_000, b"{}"),
        Event("old", "t", None, "b:c", now - 6_000, b"{}"),
        Event("new", "t", None, "c", now, b"{}"),
    ]
    frame = spliced_frame("event", "GET_EVENTS", {"eventType": "t"})
    mids = [data_fields({"evId": e.ev_id}) for e in events]
    await retained.store.append_events(APP, events, frame, mids, [])
    await retained.store.sweep()
    kept, _ = await retained.store.get_events(APP, "c", None, BUDGET)
    assert [e.ev_id for e in kept] == ["new"]
    for gone in ("a", "b:c"):
        assert (await retained.store.get_events(APP, gone, None, BUDGET))[0] == []
    assert await retained.store.delete_events(APP, "c", ["new"]) == 1


async def test_the_sweep_bounds_the_push_outbox_and_counts_what_it_drops(retained):
    """Pins: the push outbox only grew (nothing trims it on either engine): past the app's
    bound the oldest entries go first, and each one dropped is counted."""
    outbox = retained.engine.outbox
    for text in ("1", "2", "3", "4", "5"):
        await _send(retained, ["a"], text=text)
    await retained.store.sweep()
    kept, _ = await outbox.pending(APP, None, 10, None, BUDGET)
    assert [p.body for p in kept] == ["3", "4", "5"]
    assert await outbox.dropped(APP) == 2
    await asyncio.sleep(0.6)  # now all three are past their age
    await _send(retained, ["a"], text="6")
    await retained.store.sweep()
    kept, _ = await outbox.pending(APP, None, 10, None, BUDGET)
    assert [p.body for p in kept] == ["6"]
    assert await outbox.dropped(APP) == 5
    assert await outbox.dropped("another") == 0
