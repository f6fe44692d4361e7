"""The SQLite Store and PushOutbox: the whole durable state of a single node in one file.

A send writes one message row and one frame row (its recipients, their seqs and per-recipient
parts packed in it), never a row per recipient; box entries and stream positions are indexes
over those rows (index.py). A box entry gets a row of its own only once its recipient changes
it (reads or deletes it): `box_changes`.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rtt.domain.events import Event, event_bytes
from rtt.domain.messages import INBOX, SENT, BoxEntry, Message, entry_bytes
from rtt.domain.paging import Query, TopRows, fetch_for, fitting, item_bytes, sort_key
from rtt.domain.push import PushEntry, push_bytes
from rtt.engines.base import (
    DEFAULT_RETENTION,
    ClaimState,
    MessageNotFound,
    Retention,
    S2SSession,
    VersionMismatch,
)
from rtt.engines.local.database import Database
from rtt.engines.local.index import Boxes, Key, Streams, entry_key, split_ref
from rtt.protocol import Frame, dumps, loads

T = TypeVar("T")

BOX_CHUNK = 256  # box entries one job on the database thread looks at (under a millisecond)
SWEEP_SLICE = 512  # profiles' streams one sweep job trims (about a millisecond)

_MESSAGE_COLUMNS = (
    "m.msg_id, m.sender, m.recipients, m.sent_at, m.content, m.msg_cr, m.msg_up, m.msg_ver,"
    " m.reply_to"
)
# A profile's box entries as a table: its entry keys (index.py) come in as one JSON array.
# CROSS JOIN keeps them the outer loop: left to itself the planner may scan the app's messages
# and the whole array once per message, a cost quadratic in the box.
_ENTRIES = "WITH e(no, sent) AS (SELECT value >> 1, value & 1 FROM json_each(?))"
_BOX_SOURCE = (
    " FROM e CROSS JOIN messages m ON m.no = e.no LEFT JOIN box_changes c"
    " ON c.app = m.app AND c.profile = ? AND c.msg_no = e.no AND c.sent = e.sent"
    " WHERE m.app = ?"
)
_MSGBOX = f"(CASE e.sent WHEN 1 THEN '{SENT}' ELSE '{INBOX}' END)"
_READ = "coalesce(c.read, e.sent)"  # a sent entry is born read
_MB_UP = "coalesce(c.mb_up, m.msg_cr)"
_BOX_COLUMNS = f"{_MSGBOX}, {_READ}, m.msg_cr, {_MB_UP}, coalesce(c.mb_ver, 1), {_MESSAGE_COLUMNS}"
_COLUMN_OF = {
    "msgbox": _MSGBOX,
    "read": _READ,
    "message.from.id": "m.from_id",
    "mbCr": "m.msg_cr",
    "mbUp": _MB_UP,
    "msgCr": "m.msg_cr",
    "msgUp": "m.msg_up",
}
_MID_SEPARATOR = b"\x00"  # never inside a JSON fragment
# What sizing a message's item needs, read without its content (length() of a BLOB is in the
# row's header): replies are cut to their byte budget before any content is read.
_SIZE_COLUMNS = (
    "m.from_id, m.reply_to, length(m.content), length(CAST(m.sender AS BLOB)),"
    " length(CAST(m.recipients AS BLOB))"
)


def _message(row: sqlite3.Row | tuple[Any, ...]) -> Message:
    return Message(
        msg_id=row[0],
        sender=loads(row[1]),
        to=loads(row[2]),
        sent_at=row[3],
        content=row[4],
        msg_cr=row[5],
        msg_up=row[6],
        msg_ver=row[7],
        reply_to=row[8],
    )


def _entry(profile: str, row: tuple[Any, ...]) -> BoxEntry:
    return BoxEntry(profile, row[0], bool(row[1]), row[2], row[3], row[4], _message(row[5:]))


def _size(row: tuple[Any, ...], msgbox: str | None, profile: str | None) -> int:
    """The item size bound of a row of _SIZE_COLUMNS."""
    from_id, reply_to, content, sender, to = row
    return entry_bytes(msgbox, profile, from_id, reply_to, content, sender, to)


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


def insert_pushes(conn: sqlite3.Connection, app: str, pushes: list[PushEntry]) -> None:
    """Write push entries in the caller's transaction: every writer of the outbox uses this one."""
    if pushes:
        conn.executemany(
            "INSERT INTO push_outbox(app, profile, kind, ref, title, body, data, created_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            [
                (app, p.profile, p.kind, p.ref, p.title, p.body, p.data, p.created_at)
                for p in pushes
            ],
        )


def _where(query: Query, params: list[Any]) -> str:
    clauses: list[str] = []
    for f in query.filters:
        if f.field == "message.to":
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(m.recipients) j"
                f" WHERE j.value IN ({_placeholders(len(f.value))}))"
            )
            params.extend(f.value)
            continue
        column = _COLUMN_OF[f.field]
        if f.op == "eq" and f.value is None:
            clauses.append(f"{column} IS NULL")
        else:
            clauses.append(f"{column} {dict(eq='=', gte='>=', lte='<=')[f.op]} ?")
            params.append(int(f.value) if isinstance(f.value, bool) else f.value)
    return "".join(f" AND {c}" for c in clauses)


def _order(query: Query, tiebreak: str) -> str:
    parts = [f"{_COLUMN_OF[field]} {'DESC' if d < 0 else 'ASC'}" for field, d in query.sort]
    return " ORDER BY " + ", ".join([*parts, tiebreak])


class SqliteStore:
    """Store + PushOutbox on one SQLite file (see engines/base.py for the guarantees)."""

    def __init__(
        self,
        path: Path,
        *,
        stream_max_items: int,
        stream_max_seconds: float,
        retention: Retention = DEFAULT_RETENTION,
    ) -> None:
        self._db = Database(path)
        self._retention = retention
        self._boxes = Boxes()
        self._streams = Streams()
        self._staged: list[Callable[[], object]] = []  # index changes waiting for the commit
        self._max_items = stream_max_items
        self._max_seconds = stream_max_seconds
        self.epoch = ""

    @property
    def database(self) -> Database:
        """The file's one connection, for the engine's other parts that keep rows in it."""
        return self._db

    def _settle(self, committed: bool) -> None:
        staged, self._staged = self._staged, []
        if committed:
            for apply in staged:
                apply()

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One transaction; the index changes it staged apply only if it commits."""
        return await self._db.transaction(fn, settled=self._settle)

    async def start(self) -> None:
        await self._db.open()

        def start(conn: sqlite3.Connection) -> str:
            self._load(conn)
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('epoch', ?)", (uuid.uuid4().hex,)
            )
            return str(conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])

        self.epoch = await self._write(start)

    def _load(self, conn: sqlite3.Connection) -> None:
        """Rebuild the indexes from the rows: every message's holders, minus deleted entries,
        and every profile's stream from the frames still kept."""
        for no, app, recipients, sent_by in conn.execute(
            "SELECT no, app, recipients, sent_by FROM messages ORDER BY no"
        ):
            self._index_message(app, no, loads(recipients), sent_by)
        for app, profile, no, sent in conn.execute(
            "SELECT app, profile, msg_no, sent FROM box_changes WHERE deleted = 1"
        ):
            self._boxes.remove(app, profile, entry_key(no, bool(sent)))
        for app, profile, first in conn.execute("SELECT app, profile, first FROM stream_starts"):
            self._streams.kept_from[app, profile] = first
        freed: list[int] = []
        for frame_id, app, profiles, packed in conn.execute(
            "SELECT id, app, profiles, seqs FROM frames ORDER BY id"
        ):
            freed += self._streams.add_frame(app, frame_id, loads(profiles), _unpack(packed))
            if frame_id not in self._streams.users:
                freed.append(frame_id)
        conn.executemany("DELETE FROM frames WHERE id = ?", [(f,) for f in freed])

    def _append_stream(
        self,
        conn: sqlite3.Connection,
        app: str,
        frame: Frame,
        profiles: list[str],
        mids: list[bytes],
    ) -> list[int]:
        """One frame row for every (distinct) profile, each at its next seq."""
        if not profiles:
            return []
        seqs = self._streams.next_seqs(app, profiles)
        frame_id = conn.execute(
            "INSERT INTO frames(app, head, tail, created_at, profiles, seqs, mids)"
            " VALUES (?,?,?,?,?,?,?)",
            (
                app,
                frame.head,
                frame.tail,
                time.time(),
                dumps(profiles),
                array("q", seqs).tobytes(),
                _MID_SEPARATOR.join(mids),
            ),
        ).lastrowid
        assert frame_id is not None
        self._staged.append(lambda: self._streams.add_frame(app, frame_id, profiles, seqs))
        return seqs

    def _held(
        self, conn: sqlite3.Connection, app: str, profile: str, sent: bool, msg_ids: list[str]
    ) -> dict[str, tuple[Any, ...]]:
        """msg_id → (no, msg_id, msg_cr, _SIZE_COLUMNS…) of the ids `profile` holds in that
        box; no content is read."""
        has = self._boxes.has
        rows = conn.execute(
            f"SELECT m.no, m.msg_id, m.msg_cr, {_SIZE_COLUMNS} FROM messages m"
            f" WHERE m.app = ? AND m.msg_id IN ({_placeholders(len(msg_ids))})",
            (app, *msg_ids),
        )
        return {r[1]: r for r in rows if has(app, profile, entry_key(r[0], sent))}

    def _entries_by_key(
        self, conn: sqlite3.Connection, app: str, profile: str, keys: list[int]
    ) -> list[BoxEntry]:
        """The box entries of these entry keys (index.py), in that order."""
        rows = conn.execute(
            f"{_ENTRIES} SELECT e.no, e.sent, {_BOX_COLUMNS}{_BOX_SOURCE}",
            (dumps(keys), profile, app),
        )
        found = {entry_key(r[0], bool(r[1])): _entry(profile, r[2:]) for r in rows}
        return [found[k] for k in keys if k in found]

    def _holders(
        self, conn: sqlite3.Connection, app: str, msg_id: str, expected: int
    ) -> tuple[int, list[tuple[str, bool]]]:
        """The message's row number and every (profile, sent) entry still holding it, after
        a compare-and-set check of its version."""
        row = conn.execute(
            "SELECT no, msg_ver, recipients, sent_by FROM messages WHERE app = ? AND msg_id = ?",
            (app, msg_id),
        ).fetchone()
        if row is None:
            raise MessageNotFound(msg_id)
        no, version, recipients, sent_by = row
        if version != expected:
            raise VersionMismatch(msg_id)
        candidates = [(p, False) for p in loads(recipients)]
        if sent_by is not None:
            candidates.append((sent_by, True))
        has = self._boxes.has
        return no, [(p, s) for p, s in candidates if has(app, p, entry_key(no, s))]

    def _stage_removal(self, app: str, entries: list[tuple[str, int]]) -> None:
        def apply() -> None:
            for profile, entry in entries:
                self._boxes.remove(app, profile, entry)

        self._staged.append(apply)

    async def check_epoch(self) -> bool:
        """The file is the only copy: its epoch changes only with a new file."""
        return False

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def sweep(self) -> None:
        """Trim the streams SWEEP_SLICE profiles per job, then expire the rest in one: sends
        run on the database thread between the jobs, so none waits behind a whole sweep."""
        max_items, cutoff, now = self._max_items, time.time() - self._max_seconds, time.time()

        def start(conn: sqlite3.Connection) -> tuple[int, list[Key]]:
            # frame ids grow with time: everything before the first young frame is too old
            young = conn.execute(
                "SELECT id FROM frames WHERE created_at >= ? ORDER BY id LIMIT 1", (cutoff,)
            ).fetchone()
            return (young[0] if young else 1 << 62), self._streams.profiles()

        young, profiles = await self._db.run(start)
        for i in range(0, len(profiles), SWEEP_SLICE):
            part = profiles[i : i + SWEEP_SLICE]

            def trim(conn: sqlite3.Connection, part: list[Key] = part) -> None:
                freed, moved = self._streams.trim(part, max_items, young)
                conn.executemany("DELETE FROM frames WHERE id = ?", [(f,) for f in freed])
                kept_from = self._streams.kept_from
                conn.executemany(
                    "INSERT OR REPLACE INTO stream_starts VALUES (?, ?, ?)",
                    [(app, profile, kept_from[app, profile]) for app, profile in moved],
                )

            await self._write(trim)

        def expire(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM idempotency WHERE expires_at < ?", (now,))
            conn.execute("DELETE FROM s2s_sessions WHERE expires_at < ?", (now,))
            _retain(conn, self._retention, now)

        await self._write(expire)

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
        m = message

        def write(conn: sqlite3.Connection) -> list[int]:
            no = conn.execute(
                "INSERT INTO messages(app, msg_id, from_id, sent_by, sender, recipients, sent_at,"
                " content, msg_cr, msg_up, msg_ver, reply_to) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    app,
                    m.msg_id,
                    m.from_id,
                    sent_by,
                    dumps(m.sender).decode(),
                    dumps(m.to).decode(),
                    m.sent_at,
                    m.content,
                    m.msg_cr,
                    m.msg_up,
                    m.msg_ver,
                    m.reply_to,
                ),
            ).lastrowid
            assert no is not None
            insert_pushes(conn, app, pushes)
            seqs = self._append_stream(conn, app, frame, inbox, mids)
            self._staged.append(lambda: self._index_message(app, no, inbox, sent_by))
            return seqs

        return await self._write(write)

    def _index_message(self, app: str, no: int, inbox: list[str], sent_by: str | None) -> None:
        self._boxes.add(app, inbox, entry_key(no, False))
        if sent_by is not None:
            self._boxes.add(app, [sent_by], entry_key(no, True))

    async def append_events(
        self,
        app: str,
        events: list[Event],
        frame: Frame,
        mids: list[bytes],
        pushes: list[PushEntry],
    ) -> list[int]:
        def write(conn: sqlite3.Connection) -> list[int]:
            conn.executemany(
                "INSERT INTO events VALUES (?,?,?,?,?,?,?)",
                [
                    (app, e.to_id, e.ev_id, e.event_type, e.from_id, e.created_at, e.data)
                    for e in events
                ],
            )
            insert_pushes(conn, app, pushes)
            return self._append_stream(conn, app, frame, [e.to_id for e in events], mids)

        return await self._write(write)

    async def update_message(
        self, app: str, msg_id: str, expected_ver: int, content: bytes, now: int, frame: Frame
    ) -> list[tuple[str, int]]:
        def write(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            no, held = self._holders(conn, app, msg_id, expected_ver)
            conn.execute(
                "UPDATE messages SET content = ?, msg_up = ?, msg_ver = msg_ver + 1 WHERE no = ?",
                (content, now, no),
            )
            holders = sorted({p for p, _ in held})
            seqs = self._append_stream(conn, app, frame, holders, [b""] * len(holders))
            return list(zip(holders, seqs, strict=True))

        return await self._write(write)

    async def delete_message(
        self, app: str, msg_id: str, expected_ver: int, frame: Frame
    ) -> list[tuple[str, int]]:
        def write(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            no, held = self._holders(conn, app, msg_id, expected_ver)
            conn.execute("DELETE FROM messages WHERE no = ?", (no,))
            conn.execute("DELETE FROM box_changes WHERE msg_no = ?", (no,))
            self._stage_removal(app, [(p, entry_key(no, s)) for p, s in held])
            holders = sorted({p for p, _ in held})
            seqs = self._append_stream(conn, app, frame, holders, [b""] * len(holders))
            return list(zip(holders, seqs, strict=True))

        return await self._write(write)

    async def get_messages(
        self, app: str, msg_ids: list[str], max_bytes: int
    ) -> tuple[list[Message], bool]:
        def read(conn: sqlite3.Connection) -> tuple[list[Message], bool]:
            rows = conn.execute(
                f"SELECT m.msg_id, m.no, {_SIZE_COLUMNS} FROM messages m"
                f" WHERE m.app = ? AND m.msg_id IN ({_placeholders(len(msg_ids))})",
                (app, *msg_ids),
            )
            found = {r[0]: (r[1], _size(r[2:], None, None)) for r in rows}
            held = [found[i] for i in msg_ids if i in found]
            fit = fitting([size for _, size in held], max_bytes)
            return _messages_by_no(conn, [no for no, _ in held[:fit]]), fit < len(held)

        return await self._db.run(read)

    async def get_entries(
        self,
        app: str,
        profile: str,
        box: str,
        msg_ids: list[str],
        mark_read_at: int | None,
        max_bytes: int,
    ) -> tuple[list[BoxEntry], list[str]]:
        sent = box == SENT

        def read(conn: sqlite3.Connection) -> tuple[list[BoxEntry], list[str]]:
            held = self._held(conn, app, profile, sent, msg_ids)
            rows = [held[i] for i in msg_ids if i in held]
            if mark_read_at is not None:
                _mark_read(conn, app, profile, sent, [r[0] for r in rows], mark_read_at)
            fit = fitting([_size(r[3:], box, profile) for r in rows], max_bytes)
            keys = [entry_key(r[0], sent) for r in rows[:fit]]
            missing = [i for i in msg_ids if i not in held]
            return self._entries_by_key(conn, app, profile, keys), missing

        if mark_read_at is None:
            return await self._db.run(read)
        return await self._write(read)

    async def mark_read(
        self, app: str, profile: str, box: str, msg_ids: list[str], now: int
    ) -> int:
        sent = box == SENT

        def write(conn: sqlite3.Connection) -> int:
            nos = [r[0] for r in self._held(conn, app, profile, sent, msg_ids).values()]
            _mark_read(conn, app, profile, sent, nos, now)
            return len(nos)

        return await self._write(write)

    async def delete_entries(self, app: str, profile: str, box: str, msg_ids: list[str]) -> int:
        sent = box == SENT

        def write(conn: sqlite3.Connection) -> int:
            held = self._held(conn, app, profile, sent, msg_ids).values()
            conn.executemany(
                "INSERT INTO box_changes(app, profile, msg_no, sent, read, mb_up, mb_ver,"
                " deleted) VALUES (?, ?, ?, ?, ?, ?, 1, 1)"
                " ON CONFLICT DO UPDATE SET deleted = 1",
                [(app, profile, r[0], sent, sent, r[2]) for r in held],
            )
            self._stage_removal(app, [(profile, entry_key(r[0], sent)) for r in held])
            return len(held)

        return await self._write(write)

    async def _box_chunks(self, app: str, profile: str) -> list[bytes]:
        """The profile's entry keys as JSON arrays of BOX_CHUNK keys: a box is read a chunk per
        job on the database thread, so a big one never holds it for long."""
        keys = await self._db.run(lambda conn: self._boxes.entries(app, profile))
        return [dumps(keys[i : i + BOX_CHUNK]) for i in range(0, len(keys), BOX_CHUNK)]

    async def page(
        self, app: str, profile: str | None, query: Query, max_bytes: int
    ) -> tuple[int, list[BoxEntry] | list[Message]]:
        if profile is None:
            return await self._db.run(lambda conn: _sys_page(conn, app, query, max_bytes))
        # the window first, a chunk of the box per job: each chunk's best (keys, sort values,
        # msg_id) and how many matched; then, in one last job, what of it fits the budget
        sorts = len(query.sort)
        top: TopRows[tuple[Any, ...]] = TopRows(
            query, lambda r: (*sort_key(query, r[2 : 2 + sorts]), r[1], r[2 + sorts])
        )
        columns = ", ".join(_COLUMN_OF[field] for field, _ in query.sort)
        for chunk in await self._box_chunks(app, profile):
            params: list[Any] = [chunk, profile, app]
            source = _BOX_SOURCE + _where(query, params)
            best = (
                f"{_ENTRIES} SELECT e.no, e.sent, {columns}, m.msg_id{source}"
                f"{_order(query, 'e.sent, m.msg_id')} LIMIT {query.start + query.limit}"
            )

            def read(
                conn: sqlite3.Connection,
                best: str = best,
                source: str = source,
                params: Any = params,
            ) -> tuple[int, list[tuple[Any, ...]]]:
                count = conn.execute(f"{_ENTRIES} SELECT count(*){source}", params).fetchone()
                return count[0], conn.execute(best, params).fetchall()

            matched, rows = await self._db.run(read)
            top.add(rows, matched)
        window = [entry_key(r[0], bool(r[1])) for r in top.window]

        def fitting_entries(conn: sqlite3.Connection) -> list[BoxEntry]:
            rows = conn.execute(
                f"{_ENTRIES} SELECT e.no, e.sent, {_SIZE_COLUMNS}{_BOX_SOURCE}",
                (dumps(window), profile, app),
            )
            size = {
                entry_key(r[0], bool(r[1])): _size(r[2:], SENT if r[1] else INBOX, profile)
                for r in rows
            }
            held = [key for key in window if key in size]
            chosen = held[query.pick([size[key] for key in held], max_bytes)]
            return self._entries_by_key(conn, app, profile, chosen)

        return top.count, await self._db.run(fitting_entries)

    async def counts(self, app: str, profile: str) -> dict[str, dict[str, int]]:
        out = {box: {"total": 0, "unread": 0} for box in (INBOX, SENT)}
        for chunk in await self._box_chunks(app, profile):

            def read(conn: sqlite3.Connection, chunk: bytes = chunk) -> list[tuple[str, int, int]]:
                return conn.execute(
                    f"{_ENTRIES} SELECT {_MSGBOX}, count(*), sum({_READ} = 0){_BOX_SOURCE}"
                    " GROUP BY e.sent",
                    (chunk, profile, app),
                ).fetchall()

            for box, total, unread in await self._db.run(read):
                out[box]["total"] += total
                out[box]["unread"] += unread
        return out

    async def get_events(
        self, app: str, profile: str, after: tuple[int, str] | None, max_bytes: int
    ) -> tuple[list[Event], bool]:
        def read(conn: sqlite3.Connection) -> tuple[list[Event], bool]:
            sql = (
                "SELECT ev_id, event_type, from_id, created_at, length(data) FROM events"
                " WHERE app = ? AND profile = ?"
            )
            params: list[Any] = [app, profile]
            if after is not None:
                sql += " AND (created_at, ev_id) > (?, ?)"
                params += after
            rows = conn.execute(
                sql + " ORDER BY created_at, ev_id LIMIT ?", (*params, fetch_for(max_bytes))
            ).fetchall()
            fit = fitting([event_bytes(r[1], r[2], profile, r[4]) for r in rows], max_bytes)
            ids = [r[0] for r in rows[:fit]]
            data = dict(
                conn.execute(
                    "SELECT ev_id, data FROM events WHERE app = ? AND profile = ?"
                    f" AND ev_id IN ({_placeholders(len(ids))})",
                    (app, profile, *ids),
                )
            )
            events = [Event(r[0], r[1], r[2], profile, r[3], data[r[0]]) for r in rows[:fit]]
            return events, fit < len(rows)

        return await self._db.run(read)

    async def delete_events(self, app: str, profile: str, ev_ids: list[str]) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM events WHERE app = ? AND profile = ?"
                f" AND ev_id IN ({_placeholders(len(ev_ids))})",
                (app, profile, *ev_ids),
            ).rowcount

        return await self._write(write)

    async def stream_since(
        self, app: str, profile: str, after: int, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, bytes]] | None:
        def read(conn: sqlite3.Connection) -> list[tuple[int, bytes]] | None:
            found = self._streams.since(app, profile, after, limit)
            if found is None:
                return None
            first, refs = found
            if max_bytes is not None:  # the frames' sizes first, then only those that fit
                sizes = _frame_sizes(conn, sorted({split_ref(ref)[0] for ref in refs}))
                refs = refs[: fitting([sizes[split_ref(r)[0]] for r in refs], max_bytes)]
            frame_ids = sorted({split_ref(ref)[0] for ref in refs})
            rows = conn.execute(
                "SELECT id, head, tail, mids FROM frames"
                f" WHERE id IN ({_placeholders(len(frame_ids))})",
                frame_ids,
            )
            frames = {
                i: (Frame(head, tail), mids.split(_MID_SEPARATOR)) for i, head, tail, mids in rows
            }
            items = []
            for seq, ref in enumerate(refs, first):
                frame_id, position = split_ref(ref)
                frame, mids = frames[frame_id]
                items.append((seq, frame.render(seq, mids[position])))
            return items

        return await self._db.run(read)

    async def latest_seq(self, app: str, profile: str) -> int:
        # read on the event loop: a connect needs no trip to the database thread (the index
        # holds committed items only, and `latest` is safe to read while it changes)
        return self._streams.latest(app, profile)

    async def claim(
        self, app: str, key: str, fingerprint: bytes, token: str, ttl: float
    ) -> tuple[ClaimState, bytes | None]:
        def claim(conn: sqlite3.Connection) -> tuple[ClaimState, bytes | None]:
            now = time.time()
            conn.execute(
                "DELETE FROM idempotency WHERE app = ? AND key = ? AND expires_at < ?",
                (app, key, now),
            )
            conn.execute(
                "INSERT OR IGNORE INTO idempotency VALUES (?, ?, ?, ?, ?, 0, NULL)",
                (app, key, now + ttl, fingerprint, token),
            )
            held, holder, done, response = conn.execute(
                "SELECT fingerprint, token, done, response FROM idempotency"
                " WHERE app = ? AND key = ?",
                (app, key),
            ).fetchone()
            if bytes(held) != fingerprint:
                return ClaimState.CONFLICT, None
            if done:
                return ClaimState.DONE, bytes(response)
            if holder != token:
                return ClaimState.PENDING, None
            conn.execute(
                "UPDATE idempotency SET expires_at = ? WHERE app = ? AND key = ?",
                (now + ttl, app, key),
            )
            return ClaimState.OWNED, None

        return await self._write(claim)

    async def settle(
        self, app: str, key: str, token: str, response: bytes | None, ttl: float
    ) -> None:
        def settle(conn: sqlite3.Connection) -> None:
            where = " WHERE app = ? AND key = ? AND token = ? AND done = 0"
            if response is None:
                conn.execute("DELETE FROM idempotency" + where, (app, key, token))
            else:
                conn.execute(
                    "UPDATE idempotency SET done = 1, response = ?, expires_at = ?" + where,
                    (response, time.time() + ttl, app, key, token),
                )

        await self._write(settle)

    async def get_s2s_session(self, session_id: str) -> S2SSession | None:
        def read(conn: sqlite3.Connection) -> S2SSession | None:
            row = conn.execute(
                "SELECT id, app, server, expires_at, last_packet FROM s2s_sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
            return S2SSession(*row) if row else None

        return await self._db.run(read)

    async def save_s2s_session(self, session: S2SSession) -> None:
        s = session
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO s2s_sessions VALUES (?, ?, ?, ?, ?)",
                (s.session_id, s.app, s.server, s.expires_at, s.last_packet),
            )
        )

    async def pending(
        self, app: str, profile: str | None, limit: int, after: str | None, max_bytes: int
    ) -> tuple[list[PushEntry], bool]:
        def read(conn: sqlite3.Connection) -> tuple[list[PushEntry], bool]:
            sql = (
                "SELECT id, profile, kind, ref, title, body, created_at, attempts, length(data)"
                " FROM push_outbox WHERE app = ?"
            )
            params: list[Any] = [app]
            if profile is not None:
                sql += " AND profile = ?"
                params.append(profile)
            if after is not None:
                # a pushId is the row id as text: compared to the column as the number it is
                sql += " AND id > ?"
                params.append(after)
            look = min(limit + 1, fetch_for(max_bytes))
            rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*params, look)).fetchall()
            sizes = [push_bytes(r[1], r[2], r[3], r[4], r[5], r[8]) for r in rows]
            chosen = rows[: min(limit, fitting(sizes, max_bytes))]
            data = dict(
                conn.execute(
                    f"SELECT id, data FROM push_outbox WHERE id IN ({_placeholders(len(chosen))})",
                    [r[0] for r in chosen],
                )
            )
            entries = [
                PushEntry(r[1], r[2], r[3], r[4], r[5], data[r[0]], r[6], str(r[0]), r[7])
                for r in chosen
            ]
            return entries, len(rows) > len(chosen)

        return await self._db.run(read)

    async def dropped(self, app: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT count FROM push_dropped WHERE app = ?", (app,)).fetchone()
            return int(row[0]) if row else 0

        return await self._db.run(read)

    async def depth(self, app: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT count(*) FROM push_outbox WHERE app = ?", (app,)).fetchone()
            return int(row[0])

        return await self._db.run(read)


def _retain(conn: sqlite3.Connection, retention: Retention, now: float) -> None:
    """Delete events past their age, and drop push entries past their age or their app's
    count, oldest first, counting what each app lost (createdAt is in ms)."""
    conn.execute(
        "DELETE FROM events WHERE created_at < ?",
        (int((now - retention.event_max_seconds) * 1000),),
    )
    old = int((now - retention.outbox_max_seconds) * 1000)
    lost = dict(
        conn.execute(
            "SELECT app, count(*) FROM push_outbox WHERE created_at < ? GROUP BY app", (old,)
        ).fetchall()
    )
    conn.execute("DELETE FROM push_outbox WHERE created_at < ?", (old,))
    over = conn.execute(
        "SELECT app, count(*) - ? FROM push_outbox GROUP BY app HAVING count(*) > ?",
        (retention.outbox_max_entries, retention.outbox_max_entries),
    ).fetchall()
    for app, extra in over:
        conn.execute(
            "DELETE FROM push_outbox WHERE id IN"
            " (SELECT id FROM push_outbox WHERE app = ? ORDER BY id LIMIT ?)",
            (app, extra),
        )
        lost[app] = lost.get(app, 0) + extra
    conn.executemany(
        "INSERT INTO push_dropped VALUES (?, ?)"
        " ON CONFLICT(app) DO UPDATE SET count = count + excluded.count",
        list(lost.items()),
    )


def _sys_page(
    conn: sqlite3.Connection, app: str, query: Query, max_bytes: int
) -> tuple[int, list[BoxEntry] | list[Message]]:
    """A page of the app's messages (the Sys view): the window's sizes first, then the content
    of what fits. One read: its sort and filters run on the app's indexes."""
    params: list[Any] = [app]
    source = "FROM messages m WHERE m.app = ?" + _where(query, params)
    count = conn.execute(f"SELECT count(*) {source}", params).fetchone()[0]
    window = conn.execute(
        f"SELECT m.no, {_SIZE_COLUMNS} {source}{_order(query, 'm.msg_id')} LIMIT ? OFFSET ?",
        (*params, query.limit, query.start),
    ).fetchall()
    sizes = [_size(r[1:], None, None) for r in window]
    return count, _messages_by_no(conn, [r[0] for r in window[query.pick(sizes, max_bytes)]])


def _frame_sizes(conn: sqlite3.Connection, frame_ids: list[int]) -> dict[int, int]:
    """frame id → an upper bound of the size of any of its rendered frames (every target's
    part is at most all of them), read without reading the frames."""
    rows = conn.execute(
        "SELECT id, length(head) + length(tail) + length(mids) FROM frames"
        f" WHERE id IN ({_placeholders(len(frame_ids))})",
        frame_ids,
    )
    return {frame_id: item_bytes(size) for frame_id, size in rows}


def _messages_by_no(conn: sqlite3.Connection, nos: list[int]) -> list[Message]:
    """The messages of these row numbers, in that order."""
    rows = conn.execute(
        f"SELECT m.no, {_MESSAGE_COLUMNS} FROM messages m"
        f" WHERE m.no IN ({_placeholders(len(nos))})",
        nos,
    )
    found = {r[0]: _message(r[1:]) for r in rows}
    return [found[no] for no in nos if no in found]


def _unpack(packed: bytes) -> list[int]:
    seqs: array[int] = array("q")
    seqs.frombytes(packed)
    return seqs.tolist()


def _mark_read(
    conn: sqlite3.Connection, app: str, profile: str, sent: bool, nos: list[int], now: int
) -> None:
    """Inbox entries become read (and bump their version); sent entries are born read."""
    if not sent:
        conn.executemany(
            "INSERT INTO box_changes(app, profile, msg_no, sent, read, mb_up, mb_ver, deleted)"
            " VALUES (?, ?, ?, 0, 1, ?, 2, 0) ON CONFLICT DO UPDATE"
            " SET read = 1, mb_up = excluded.mb_up, mb_ver = mb_ver + 1 WHERE read = 0",
            [(app, profile, no, now) for no in nos],
        )
