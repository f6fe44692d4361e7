"""The Redis Store and PushOutbox: every write is one Lua script, so it lands whole or not at all.

Redis errors and timeouts surface as `EngineUnavailable`, which front doors answer with 503 and
`Retry-After`: nothing was half-written, so the caller can simply retry.
"""

from __future__ import annotations

import asyncio
import functools
import operator
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

import orjson
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.domain.events import Event
from rtt.domain.messages import INBOX, SENT, BoxEntry, Message, entry_bytes
from rtt.domain.paging import Query, TopRows, fetch_for, fitting, item_bytes
from rtt.domain.push import PushEntry
from rtt.engines.base import (
    DEFAULT_RETENTION,
    ClaimState,
    EngineUnavailable,
    MessageNotFound,
    Retention,
    S2SSession,
    VersionMismatch,
)
from rtt.engines.redis import keys, query
from rtt.engines.redis.idempotency import RedisClaims
from rtt.engines.redis.layout import refuse_legacy_layout
from rtt.engines.redis.parts import Part, Writer, slot
from rtt.engines.redis.scripts import Scripts
from rtt.protocol import Frame, dumps, json_strings, loads
from rtt.slices import pieces, sliced

P = ParamSpec("P")
T = TypeVar("T")

_FIELDS = (
    "from_id",
    "sender",
    "to",
    "sent_at",
    "content",
    "msg_cr",
    "msg_up",
    "msg_ver",
    "reply_to",
)
CHANGE_RETRIES = 5
# Reads go in small commands so no connection is held for a big transfer: messages' metadata
# META_CHUNK per script call, box fields or index members a SCAN step at a time, push entries
# PUSH_CHUNK per XRANGE.
META_CHUNK = 128
SCAN_COUNT = 512  # a SCAN step visits this many buckets: about META_CHUNK entries
PUSH_CHUNK = 16


def guarded(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Turn Redis connection trouble into EngineUnavailable (503 + Retry-After upstream)."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as e:
            raise EngineUnavailable(str(e)) from e
        except redis.exceptions.BusyLoadingError as e:
            raise EngineUnavailable("redis is loading its data") from e
        except (redis.exceptions.ClusterError, redis.exceptions.RedisClusterException) as e:
            raise EngineUnavailable(f"redis cluster: {e}") from e  # down, or a slot not served

    return wrapper


def _message(msg_id: str, values: list[Any]) -> Message | None:
    if values[0] is None and values[1] is None:
        return None
    fields = dict(zip(_FIELDS, values, strict=True))
    return Message(
        msg_id=msg_id,
        sender=loads(fields["sender"]),
        to=loads(fields["to"]),
        sent_at=int(fields["sent_at"]),
        content=bytes(fields["content"]),
        msg_cr=int(fields["msg_cr"]),
        msg_up=int(fields["msg_up"]),
        msg_ver=int(fields["msg_ver"]),
        reply_to=fields["reply_to"].decode() or None,
    )


def _push_entry(entry_id: bytes, f: dict[bytes, Any]) -> PushEntry:
    return PushEntry(
        f[b"profile"].decode(), f[b"kind"].decode(), f[b"ref"].decode(), f[b"title"].decode(),
        f[b"body"].decode(), bytes(f[b"data"]), int(f[b"created_at"]), entry_id.decode(),
        int(f[b"attempts"]),
    )  # fmt: skip


def _box_field(field: bytes) -> tuple[str, str]:
    """`<msgbox>:<msgId>` of a box hash field → (msgbox, msgId)."""
    box, _, msg_id = field.decode().partition(":")
    return box, msg_id


async def _json_array(items: Sequence[T], entry: Callable[[T], Any]) -> bytes:
    """`[entry(item), …]` as one JSON argument, for a script to decode in one call: encoded in
    C a slice at a time (where an argument per item costs redis-py ~2 µs each to pack)."""
    return _array(await pieces(items, lambda some: dumps([entry(item) for item in some])[1:-1]))


def _array(parts: list[bytes]) -> bytes:
    """A JSON array of pieces each holding some of its elements (an empty piece holds none)."""
    return b"[" + b",".join(part for part in parts if part) + b"]"


_SEQ_FIELD = keys.SEQ_FIELD.encode()  # as a box read returns it

_BUT_PROFILE = operator.itemgetter(1, 2, 3, 4, 5, 6)  # a PushEntry's fields after `profile`


def _shared(p: PushEntry) -> list[str]:
    return [p.kind, p.ref, p.title, p.body, p.data.decode(), str(p.created_at)]


def _push_groups(some: Sequence[PushEntry]) -> bytes:
    """The push groups of `some` (lua/_outbox.lua), without their array's brackets. The entries
    of one send share every field but the profile: then they are one group, its fields encoded
    once and its profiles' JSON strings joined in C, about a tenth of the bytes of a row per
    entry (8 MB for 100 000 recipients) and no tuple per recipient."""
    if len(set(map(_BUT_PROFILE, some))) == 1:
        profiles = b",".join(json_strings([p.profile for p in some]))
        return dumps(_shared(some[0]))[:-1] + b",[" + profiles + b"]]"
    return dumps([[*_shared(p), [p.profile]] for p in some])[1:-1]


async def push_json(pushes: list[PushEntry]) -> bytes:
    """Push entries as the one JSON argument every script that queues them decodes."""
    return _array(await pieces(pushes, _push_groups))


async def outbox_parts(app: str, pushes: list[PushEntry]) -> list[Part]:
    """The parts that queue `pushes`: the entries, and the outbox in the sweep's set."""
    if not pushes:
        return []
    outbox = keys.outbox(app)
    return [
        Part("outbox", [outbox], [await push_json(pushes)]),
        Part("member", [keys.OUTBOXES], [outbox]),
    ]


def _event_row(pair: tuple[Event, bytes]) -> tuple[Any, ...]:
    e, mid = pair
    item = dumps(e.item()).decode()
    return (e.ev_id, mid.decode(), item, e.created_at, keys.event_member(e.to_id, e.ev_id))


def _grouped(slots: Iterable[int]) -> list[list[int]]:
    """The indexes of `slots`, a group per distinct slot, in first-seen order."""
    by_slot: dict[int, list[int]] = {}
    for i, s in enumerate(slots):
        by_slot.setdefault(s, []).append(i)
    return list(by_slot.values())


def _pick(items: Sequence[T], group: list[int]) -> Sequence[T]:
    """The items at `group`'s indexes: `items` itself when the group is every index."""
    return items if len(group) == len(items) else [items[i] for i in group]


def _change_error(error: redis.exceptions.ResponseError) -> Exception:
    text = str(error)
    if text.startswith("NOTFOUND"):
        return MessageNotFound()
    if text.startswith("VERSION"):
        return VersionMismatch()
    return error


class RedisStore:
    """Store + PushOutbox on Redis (see engines/base.py for the guarantees)."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        stream_max_items: int,
        stream_max_seconds: float,
        retention: Retention = DEFAULT_RETENTION,
        sys_scan_max: int = query.SYS_SCAN_MAX,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        self._r = client
        self._cluster = isinstance(client, RedisCluster)
        self._writer = Writer(client, replicas=replicas, replica_timeout=replica_timeout)
        self._retention = retention
        self._scan_max = sys_scan_max
        self._scripts = Scripts(client)
        self._claims = RedisClaims(client)
        self._max_items = stream_max_items
        self._frame_ttl_ms = max(1, int(stream_max_seconds * 1000))
        self._writes_seen = 0
        self.epoch = ""

    # --- lifecycle and epoch -------------------------------------------------------------

    async def start(self) -> None:
        await refuse_legacy_layout(self._r)
        await self.check_epoch()

    @guarded
    async def check_epoch(self) -> bool:
        """Adopt the current epoch; True if it changed since the last check (data was lost)."""
        epoch, writes = await self._scripts.epoch(
            keys=[keys.EPOCH, keys.WRITES, keys.LAYOUT],
            args=[self.epoch, self._writes_seen, uuid.uuid4().hex, keys.LAYOUT_VERSION],
        )
        epoch = epoch.decode()
        changed = bool(self.epoch) and epoch != self.epoch
        self.epoch = epoch
        self._writes_seen = int(writes) if changed else max(self._writes_seen, int(writes))
        return changed

    def _saw(self, writes: int) -> None:
        self._writes_seen = max(self._writes_seen, writes)

    async def close(self) -> None:
        await self._r.aclose()

    @guarded
    async def ping(self) -> None:
        if isinstance(self._r, RedisCluster):  # every master, which every write may need; a
            # replica down (say, a failed master not yet back) leaves writes and reads served
            await self._r.execute_command("PING", target_nodes=RedisCluster.PRIMARIES)
        else:
            await self._r.ping()

    @guarded
    async def sweep(self) -> None:
        """Frames, caches and sessions expire by themselves (TTL); events and push entries past
        their retention are removed here, a batch at a time."""
        now = time.time()
        cutoff = int((now - self._retention.event_max_seconds) * 1000)
        for app in await self._r.smembers(keys.EVENT_APPS):
            await self._expire_events(app.decode(), cutoff)
        oldest = f"{int((now - self._retention.outbox_max_seconds) * 1000)}-0"
        for outbox in await self._r.smembers(keys.OUTBOXES):
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.xtrim(outbox, minid=oldest, approximate=False)
                pipe.xtrim(outbox, maxlen=self._retention.outbox_max_entries, approximate=False)
                old, over = await pipe.execute()
            if old + over:
                await self._r.hincrby(keys.PUSH_DROPPED, outbox.decode(), old + over)

    async def _expire_events(self, app: str, cutoff: int) -> None:
        """Delete the app's events created before `cutoff` (ms), SCAN_COUNT at a time."""
        while True:
            members = await self._r.zrangebyscore(
                keys.event_ages(app), "-inf", f"({cutoff}", start=0, num=SCAN_COUNT
            )
            if not members:
                return
            # the profiles' keys first, then the ages: a sweep cut short is redone whole
            async with self._r.pipeline(transaction=False) as pipe:
                for member in members:
                    profile, ev_id = keys.split_event_member(member.decode())
                    pipe.hdel(keys.events(app, profile), ev_id)
                    pipe.zrem(keys.event_order(app, profile), ev_id)
                    pipe.zrem(keys.event_seqs(app, profile), ev_id)
                await pipe.execute()
            await self._r.zrem(keys.event_ages(app), *members)

    # --- writes ------------------------------------------------------------------------------

    def _frame(self, app: str, fid: str, frame: Frame) -> Part:
        return Part("frame", [keys.frame(app, fid)], [frame.head, frame.tail, self._frame_ttl_ms])

    async def _write(self, parts: list[Part], *, first_alone: bool = False) -> list[list[Any]]:
        """Run `parts` and count the write (keys.WRITES, last part): the epoch check's mark."""
        answers = await self._writer.run(
            [*parts, Part("counter", [keys.WRITES], [])], first_alone=first_alone
        )
        self._saw(int(answers[-1][0]))
        return answers[:-1]

    async def _slots(self, app: str, profiles: Sequence[str]) -> list[list[int]]:
        """The indexes of `profiles`, a group per cluster slot of their hash tags (one group on
        a single Redis; none for no profiles): a part of the recipients touches one slot."""
        if not self._cluster:
            return [list(range(len(profiles)))] if profiles else []
        return _grouped(
            await sliced(profiles, lambda some: [slot(keys.profile(app, p)) for p in some])
        )

    @staticmethod
    def _seqs(size: int, groups: list[list[int]], answers: list[list[Any]]) -> list[int]:
        """Each recipient's seq, from the answer of its slot's part (already in order when one
        part holds every recipient: a 100 000-long loop here held the event loop 10 ms)."""
        if len(groups) == 1:
            return answers[0]
        seqs = [0] * size
        for group, answer in zip(groups, answers, strict=True):
            for i, seq in zip(group, answer, strict=True):
                seqs[i] = int(seq)
        return seqs

    @guarded
    async def append_message(
        self,
        app: str,
        message: Message,
        inbox: list[str],
        sent_by: str | None,
        frame: Frame,
        mids: list[bytes],
        pushes: list[PushEntry],
    ) -> list[int]:
        m, fid = message, uuid.uuid4().hex
        holders = await sliced(inbox, lambda some: [f"inbox|{p}" for p in some])
        if sent_by:
            holders.append(f"sent|{sent_by}")
        parts = [
            Part("message", [keys.message(app, m.msg_id), keys.holders(app, m.msg_id)], [
                m.msg_id, m.from_id or "", dumps(m.sender), dumps(m.to), m.msg_cr, m.content,
                m.reply_to or "", await _json_array(holders, str),
            ]),
            Part("index", [*keys.message_orders(app), keys.message_counter(app),
                           keys.message_numbers(app)], [m.msg_id, m.msg_cr]),
            self._frame(app, fid, frame),
            *await outbox_parts(app, pushes),
        ]  # fmt: skip
        if sent_by is not None:
            parts.append(Part("sent", [keys.box(app, sent_by)], [m.msg_id, m.msg_cr]))
        groups = await self._slots(app, inbox)
        for group in groups:
            some = _pick(inbox, group)
            part_keys = await sliced(
                some, lambda s: keys.profile_keys(app, s, keys.BOX, keys.STREAM)
            )
            mids_json = await _json_array(_pick(mids, group), bytes.decode)
            args = [fid, m.msg_id, m.msg_cr, self._max_items, mids_json]
            parts.append(Part("deliver", part_keys, args))
        answers = await self._write(parts, first_alone=True)
        return self._seqs(len(inbox), groups, answers[len(answers) - len(groups) :])

    @guarded
    async def append_events(
        self,
        app: str,
        events: list[Event],
        frame: Frame,
        mids: list[bytes],
        pushes: list[PushEntry],
    ) -> list[int]:
        fid = uuid.uuid4().hex
        rows = await sliced(
            list(zip(events, mids, strict=True)), lambda s: [_event_row(r) for r in s]
        )
        parts = [self._frame(app, fid, frame), *await outbox_parts(app, pushes)]
        if events:
            ages = dumps([[created, member] for *_, created, member in rows])
            parts += [Part("ages", [keys.event_ages(app)], [ages]),
                      Part("member", [keys.EVENT_APPS], [app])]  # fmt: skip
        profiles = [e.to_id for e in events]
        groups = await self._slots(app, profiles)
        for group in groups:
            part_keys = await sliced(
                _pick(profiles, group),
                lambda s: keys.profile_keys(
                    app, s, keys.BOX, keys.STREAM, keys.EVENTS, keys.EVENT_ORDER, keys.EVENT_SEQS
                ),
            )
            some_rows = dumps([row[:4] for row in _pick(rows, group)])
            parts.append(Part("events", part_keys, [fid, self._max_items, some_rows]))
        answers = await self._write(parts)
        return self._seqs(len(events), groups, answers[len(answers) - len(groups) :])

    async def _change(
        self,
        action: str,
        app: str,
        msg_id: str,
        expected_ver: int,
        content: bytes,
        now: int,
        frame: Frame,
    ) -> list[tuple[str, int]]:
        """Run the change parts, re-reading the holders if they moved under us."""
        for _ in range(CHANGE_RETRIES):
            members = await self._r.smembers(keys.holders(app, msg_id))
            holders = sorted({m.decode().split("|", 1)[1] for m in members})
            fid = uuid.uuid4().hex
            parts = [
                Part("change", [keys.message(app, msg_id), keys.holders(app, msg_id)],
                     [action, expected_ver, content, now, *holders]),
                Part("reindex", [*keys.message_orders(app), keys.message_numbers(app)],
                     [action, msg_id, now]),
                self._frame(app, fid, frame),
            ]  # fmt: skip
            groups = await self._slots(app, holders)
            for group in groups:
                part_keys = keys.profile_keys(app, _pick(holders, group), keys.BOX, keys.STREAM)
                parts.append(Part("touch", part_keys, [action, msg_id, fid, self._max_items]))
            try:
                answers = await self._write(parts, first_alone=True)
            except redis.exceptions.ResponseError as e:
                error = _change_error(e)
                if str(e).startswith("RETRY"):
                    continue
                raise error from None
            seqs = self._seqs(len(holders), groups, answers[len(answers) - len(groups) :])
            return list(zip(holders, seqs, strict=True))
        raise EngineUnavailable("message holders kept changing; retry")

    @guarded
    async def update_message(
        self, app: str, msg_id: str, expected_ver: int, content: bytes, now: int, frame: Frame
    ) -> list[tuple[str, int]]:
        return await self._change("update", app, msg_id, expected_ver, content, now, frame)

    @guarded
    async def delete_message(
        self, app: str, msg_id: str, expected_ver: int, frame: Frame
    ) -> list[tuple[str, int]]:
        return await self._change("delete", app, msg_id, expected_ver, b"", 0, frame)

    async def _box_entries(
        self, action: str, app: str, profile: str, box: str, msg_ids: list[str], now: int
    ) -> int:
        parts = [Part("box", [keys.box(app, profile)], [action, box, now, *msg_ids])]
        if action == "delete":  # a deleted entry's profile no longer holds its message
            member = f"{box}|{profile}"
            parts += [Part("unhold", [keys.holders(app, i)], [member]) for i in msg_ids]
        answers = await self._writer.run(parts, first_alone=True)
        return int(answers[0][0])

    @guarded
    async def mark_read(
        self, app: str, profile: str, box: str, msg_ids: list[str], now: int
    ) -> int:
        return await self._box_entries("read", app, profile, box, msg_ids, now)

    @guarded
    async def delete_entries(self, app: str, profile: str, box: str, msg_ids: list[str]) -> int:
        return await self._box_entries("delete", app, profile, box, msg_ids, 0)

    # --- reads ------------------------------------------------------------------------------

    async def _messages(self, app: str, msg_ids: list[str]) -> dict[str, Message]:
        async with self._r.pipeline(transaction=False) as pipe:
            for msg_id in msg_ids:
                pipe.hmget(keys.message(app, msg_id), _FIELDS)
            rows = await pipe.execute()
        found = {i: _message(i, row) for i, row in zip(msg_ids, rows, strict=True)}
        return {i: m for i, m in found.items() if m is not None}

    async def _metas(
        self, app: str, msg_ids: list[str], with_to: bool
    ) -> dict[str, tuple[Any, ...]]:
        """msg_id → (from_id, reply_to, msg_cr, msg_up, content, sender, to sizes, to) of the
        messages that exist, without reading their content; `to` only if `with_to`."""
        out: dict[str, tuple[Any, ...]] = {}
        for i in range(0, len(msg_ids), META_CHUNK):
            chunk = msg_ids[i : i + META_CHUNK]
            for msg_id, meta in await self._meta_chunk(app, chunk, with_to):
                from_id, reply_to, msg_cr, msg_up, content, sender, to, recipients = meta
                if msg_cr is None:
                    continue  # deleted meanwhile
                out[msg_id] = (
                    from_id.decode() or None, reply_to.decode() or None, int(msg_cr),
                    int(msg_up), content, sender, to, loads(recipients) if with_to else None,
                )  # fmt: skip
        return out

    async def _meta_chunk(
        self, app: str, msg_ids: list[str], with_to: bool
    ) -> list[tuple[str, list[Any]]]:
        """(msg_id, message_meta.lua's answer) of each: one call, or on a cluster one call per
        slot (a script reads one slot), the calls at once."""
        names = [keys.message(app, msg_id) for msg_id in msg_ids]
        groups = _grouped(map(slot, names)) if self._cluster else [list(range(len(names)))]
        flag = ["1" if with_to else "0"]
        answers = await asyncio.gather(*(
            self._scripts.message_meta(keys=[names[i] for i in group], args=flag)
            for group in groups
        ))  # fmt: skip
        return [
            (msg_ids[i], meta)
            for group, metas in zip(groups, answers, strict=True)
            for i, meta in zip(group, metas, strict=True)
        ]

    async def _cut_messages(
        self, app: str, msg_ids: list[str], max_bytes: int, msgbox: str | None, profile: str | None
    ) -> tuple[dict[str, Message], int]:
        """The messages of the leading ids that fit in `max_bytes` (missing ones skipped), and
        how many existed."""
        metas = await self._metas(app, msg_ids, with_to=False)
        held = [i for i in msg_ids if i in metas]
        sizes = [entry_bytes(msgbox, profile, *metas[i][:2], *metas[i][4:7]) for i in held]
        return await self._messages(app, held[: fitting(sizes, max_bytes)]), len(held)

    @guarded
    async def get_messages(
        self, app: str, msg_ids: list[str], max_bytes: int
    ) -> tuple[list[Message], bool]:
        found, existing = await self._cut_messages(app, msg_ids, max_bytes, None, None)
        return [found[i] for i in msg_ids if i in found], len(found) < existing

    @guarded
    async def get_entries(
        self,
        app: str,
        profile: str,
        box: str,
        msg_ids: list[str],
        mark_read_at: int | None,
        max_bytes: int,
    ) -> tuple[list[BoxEntry], list[str]]:
        if mark_read_at is not None:
            await self._box_entries("read", app, profile, box, msg_ids, mark_read_at)
        values = await self._r.hmget(keys.box(app, profile), [f"{box}:{i}" for i in msg_ids])
        states = {i: loads(v) for i, v in zip(msg_ids, values, strict=True) if v is not None}
        found, _ = await self._cut_messages(app, list(states), max_bytes, box, profile)
        entries = [
            BoxEntry(profile, box, bool(s[0]), int(s[1]), int(s[2]), int(s[3]), found[i])
            for i, s in states.items()
            if i in found
        ]
        return entries, [i for i in msg_ids if i not in states]

    async def _rows(
        self, app: str, profile: str | None, states: dict[tuple[str, str], Any], with_to: bool
    ) -> list[query.Row]:
        """A query row per (box, msg_id) of `states` (the Sys view: box "" and no state)."""
        metas = await self._metas(app, list(dict.fromkeys(i for _, i in states)), with_to)
        rows = []
        for (box, msg_id), state in states.items():
            meta = metas.get(msg_id)
            if meta is None:
                continue
            from_id, reply_to, msg_cr, msg_up, content, sender, to, recipients = meta
            values = {
                "message.from.id": from_id,
                "message.to": recipients,
                "msgCr": msg_cr,
                "msgUp": msg_up,
            }
            if state is not None:
                values |= {"msgbox": box, "read": bool(state[0]), "mbCr": state[1]}
                values["mbUp"] = state[2]
            size = entry_bytes(box or None, profile, from_id, reply_to, content, sender, to)
            rows.append(query.Row(msg_id, box, values, size, state))
        return rows

    async def _box_candidates(
        self, app: str, profile: str
    ) -> AsyncIterator[dict[tuple[str, str], Any]]:
        """The profile's box entries ((box, msg_id) → state), a SCAN step at a time (a SCAN
        returns an entry at least once)."""
        cursor: int | None = None
        while cursor != 0:
            cursor, fields = await self._r.hscan(
                keys.box(app, profile), cursor or 0, count=SCAN_COUNT
            )
            yield {_box_field(f): loads(v) for f, v in fields.items() if f != _SEQ_FIELD}

    async def _sys_window(self, app: str, q: Query) -> tuple[int, list[query.Row]]:
        """The count and window of a Sys query, read through the app's message index (see
        query.py: O(page + log n) when the index answers every criterion, else at most
        RTT_SYS_SCAN_MAX entries examined)."""
        plan = query.plan(q)
        index = keys.message_order(app, plan.sort_field, plan.direction)
        low, high = plan.bounds()
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.zcount(index, "-inf", f"({low}")  # the rank of the range's first entry
            pipe.zcount(index, low, high)
            first, in_range = await pipe.execute()
        if plan.exact:
            end = min(q.start + q.limit, in_range)  # a ZRANGE to -1 would mean "to the last"
            ids = (
                await self._r.zrange(index, first + q.start, first + end - 1)
                if end > q.start
                else []
            )
            states = {("", i.decode()): None for i in ids}
            return in_range, await self._rows(app, None, states, with_to=False)
        with_to = any(f.field == "message.to" for f in plan.rest)
        top: TopRows[query.Row] = TopRows(q, lambda row: query.order(q, row))
        examined = 0
        while examined < min(in_range, self._scan_max):
            step = min(META_CHUNK, in_range - examined, self._scan_max - examined)
            ids = await self._r.zrange(index, first + examined, first + examined + step - 1)
            if not ids:
                break  # the index shrank meanwhile
            examined += len(ids)
            rows = await self._rows(app, None, {("", i.decode()): None for i in ids}, with_to)
            top.add([row for row in rows if query.matches(q, row)])
        return top.count + max(0, in_range - examined), top.window

    @guarded
    async def page(
        self, app: str, profile: str | None, q: Query, max_bytes: int
    ) -> tuple[int, list[BoxEntry] | list[Message]]:
        if profile is None:
            count, window = await self._sys_window(app, q)
            chosen = window[q.pick([row.size for row in window], max_bytes)]
            found = await self._messages(app, [row.msg_id for row in chosen])
            return count, [found[r.msg_id] for r in chosen if r.msg_id in found]
        with_to = any(f.field == "message.to" for f in q.filters)
        top: TopRows[query.Row] = TopRows(q, lambda row: query.order(q, row))
        seen: set[tuple[str, str]] = set()
        async for batch in self._box_candidates(app, profile):
            fresh = {key: state for key, state in batch.items() if key not in seen}
            seen.update(fresh)
            rows = await self._rows(app, profile, fresh, with_to)
            top.add([row for row in rows if query.matches(q, row)])
        window = top.window
        chosen = window[q.pick([row.size for row in window], max_bytes)]
        found = await self._messages(app, [row.msg_id for row in chosen])
        return top.count, [
            BoxEntry(profile, r.msgbox, bool(s[0]), int(s[1]), int(s[2]), int(s[3]), m)
            for r in chosen
            if (m := found.get(r.msg_id)) is not None and (s := r.state) is not None
        ]

    @guarded
    async def counts(self, app: str, profile: str) -> dict[str, dict[str, int]]:
        out = {box: {"total": 0, "unread": 0} for box in (INBOX, SENT)}
        for field, value in (await self._r.hgetall(keys.box(app, profile))).items():
            if field == _SEQ_FIELD:
                continue
            box = field.decode().split(":", 1)[0]
            out[box]["total"] += 1
            if box == INBOX and loads(value)[0] == 0:
                out[box]["unread"] += 1
        return out

    async def _event_order(
        self, app: str, profile: str, after: tuple[int, str] | None, look: int
    ) -> list[str]:
        """Up to `look` event ids oldest first (createdAt, then evId), after `after`."""
        order = keys.event_order(app, profile)
        low: str | int = "-inf" if after is None else after[0]
        ids: list[str] = []
        offset = 0
        while len(ids) < look:
            batch = await self._r.zrangebyscore(
                order, low, "+inf", start=offset, num=look, withscores=True
            )
            for member, score in cast(list[tuple[bytes, float]], batch):
                key = (int(score), member.decode())
                if after is None or key > after:
                    ids.append(key[1])
            if len(batch) < look:
                break
            offset += len(batch)
        return ids[:look]

    @guarded
    async def get_events(
        self, app: str, profile: str, after: tuple[int, str] | None, max_bytes: int
    ) -> tuple[list[Event], bool]:
        ids = await self._event_order(app, profile, after, fetch_for(max_bytes))
        if not ids:
            return [], False
        events_key = keys.events(app, profile)
        async with self._r.pipeline(transaction=False) as pipe:
            for ev_id in ids:
                pipe.hstrlen(events_key, ev_id)  # the stored JSON is the item
            sizes = await pipe.execute()
        fit = fitting(sizes, max_bytes)
        items = [loads(v) for v in await self._r.hmget(events_key, ids[:fit]) if v is not None]
        events = [Event.from_item(e) for e in items]
        return events, fit < len(ids)

    @guarded
    async def delete_events(self, app: str, profile: str, ev_ids: list[str]) -> int:
        async with self._r.pipeline(transaction=True) as pipe:  # the profile's slot
            pipe.hdel(keys.events(app, profile), *ev_ids)
            pipe.zrem(keys.event_order(app, profile), *ev_ids)
            pipe.zrem(keys.event_seqs(app, profile), *ev_ids)
            deleted, *_ = await pipe.execute()
        # the app's slot; an age left behind by a failure here only makes the sweep look again
        await self._r.zrem(keys.event_ages(app), *(keys.event_member(profile, e) for e in ev_ids))
        return int(deleted)

    # --- stream ------------------------------------------------------------------------------

    @guarded
    async def stream_since(
        self, app: str, profile: str, after: int, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, bytes]] | None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(keys.stream(app, profile), f"({after}", "+inf", start=0, num=limit)
            pipe.hget(keys.box(app, profile), keys.SEQ_FIELD)
            members, latest = await pipe.execute()
        latest_seq = int(latest or 0)
        if after > latest_seq:
            return None
        items = [m.split(b":", 2) for m in members]
        if latest_seq > after and (not items or int(items[0][0]) != after + 1):
            return None
        if max_bytes is not None:  # the frames' sizes first, then only those that fit
            sizes = await self._frame_sizes(app, list({fid.decode() for _, fid, _ in items}))
            fit = fitting([sizes[fid.decode()] + len(mid) for _, fid, mid in items], max_bytes)
            items = items[:fit]
        frame_ids = list({fid.decode() for _, fid, _ in items})
        async with self._r.pipeline(transaction=False) as pipe:
            for fid in frame_ids:
                pipe.hmget(keys.frame(app, fid), ["head", "tail"])
            frames = dict(zip(frame_ids, await pipe.execute(), strict=True))
        out: list[tuple[int, bytes]] = []
        for seq, fid, mid in items:
            head, tail = frames[fid.decode()]
            if head is None:
                return None  # the frame outlived its retention: the cursor is too old
            out.append((int(seq), Frame(head, tail).render(int(seq), mid)))
        return out

    async def _frame_sizes(self, app: str, frame_ids: list[str]) -> dict[str, int]:
        """frame id → an upper bound of its rendered size but the per-target part."""
        async with self._r.pipeline(transaction=False) as pipe:
            for fid in frame_ids:
                pipe.hstrlen(keys.frame(app, fid), "head")
                pipe.hstrlen(keys.frame(app, fid), "tail")
            lengths = await pipe.execute()
        return {
            fid: item_bytes(lengths[2 * n] + lengths[2 * n + 1]) for n, fid in enumerate(frame_ids)
        }

    @guarded
    async def latest_seq(self, app: str, profile: str) -> int:
        return int(await self._r.hget(keys.box(app, profile), keys.SEQ_FIELD) or 0)

    # --- caches ------------------------------------------------------------------------------

    @guarded
    async def claim(
        self, app: str, key: str, fingerprint: bytes, token: str, ttl: float
    ) -> tuple[ClaimState, bytes | None]:
        return await self._claims.claim(app, key, fingerprint, token, ttl)

    @guarded
    async def settle(
        self, app: str, key: str, token: str, response: bytes | None, ttl: float
    ) -> None:
        await self._claims.settle(app, key, token, response, ttl)

    @guarded
    async def get_s2s_session(self, session_id: str) -> S2SSession | None:
        raw = await self._r.get(keys.s2s_session(session_id))
        if raw is None:
            return None
        s = loads(raw)
        return S2SSession(s["session_id"], s["app"], s["server"], s["expires_at"], s["last_packet"])

    @guarded
    async def save_s2s_session(self, session: S2SSession) -> None:
        s = session
        body = {
            "session_id": s.session_id, "app": s.app, "server": s.server,
            "expires_at": s.expires_at, "last_packet": s.last_packet,
        }  # fmt: skip
        ttl = max(1, int((s.expires_at - time.time()) * 1000))
        await self._r.set(keys.s2s_session(s.session_id), orjson.dumps(body), px=ttl)

    # --- push outbox -------------------------------------------------------------------------

    @guarded
    async def pending(
        self, app: str, profile: str | None, limit: int, after: str | None, max_bytes: int
    ) -> tuple[list[PushEntry], bool]:
        out: list[PushEntry] = []
        total = 0
        start = "-" if after is None else f"({after}"
        more = False
        while not more:
            batch = await self._r.xrange(keys.outbox(app), min=start, max="+", count=PUSH_CHUNK)
            for entry_id, f in batch:
                if profile is not None and f[b"profile"].decode() != profile:
                    continue
                entry = _push_entry(entry_id, f)
                total += len(dumps(entry.item()))
                if len(out) == limit or (out and total > max_bytes):
                    more = True
                    break
                out.append(entry)
            if len(batch) < PUSH_CHUNK:
                break
            start = "(" + batch[-1][0].decode()
        return await self._attempted(app, out), more

    async def _attempted(self, app: str, entries: list[PushEntry]) -> list[PushEntry]:
        """The entries with the attempts the push dispatchers counted (keys.push_tries): a
        stream entry cannot change, so its own field stays 0."""
        if not entries:
            return entries
        tries = await self._r.hmget(keys.push_tries(app), [e.push_id for e in entries])
        return [
            e if raw is None else e._replace(attempts=int(raw.split(b":")[0]))
            for e, raw in zip(entries, tries, strict=True)
        ]

    @guarded
    async def dropped(self, app: str) -> int:
        return int(await self._r.hget(keys.PUSH_DROPPED, keys.outbox(app)) or 0)

    @guarded
    async def depth(self, app: str) -> int:
        return int(await self._r.xlen(keys.outbox(app)))
