"""The SQLite Store and PushOutbox: the whole durable state of a single node in one file."""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rtt.domain.events import Event
from rtt.domain.messages import INBOX, SENT, BoxEntry, Message
from rtt.domain.paging import Query
from rtt.domain.push import PushEntry
from rtt.engines.base import MessageNotFound, S2SSession, VersionMismatch
from rtt.engines.local.database import Database
from rtt.protocol import Frame, dumps, loads

T = TypeVar("T")

_MESSAGE_COLUMNS = (
    "m.msg_id, m.sender, m.recipients, m.sent_at, m.content, m.msg_cr, m.msg_up, m.msg_ver,"
    " m.reply_to"
)
_BOX_COLUMNS = "b.msgbox, b.read, b.mb_cr, b.mb_up, b.mb_ver, " + _MESSAGE_COLUMNS
_COLUMN_OF = {
    "msgbox": "b.msgbox",
    "read": "b.read",
    "message.from.id": "m.from_id",
    "mbCr": "b.mb_cr",
    "mbUp": "b.mb_up",
    "msgCr": "m.msg_cr",
    "msgUp": "m.msg_up",
}


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


def _placeholders(n: int) -> str:
    return ",".join("?" * n)


class SeqCache:
    """Each profile's latest seq, kept by the database thread so a send reads none of them
    from disk. What a transaction stages becomes visible only once it commits."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self._latest: dict[tuple[str, str], int] = {}
        self._staged: dict[tuple[str, str], int] = {}
        self._limit = limit

    def latest(self, conn: sqlite3.Connection, app: str, profiles: list[str]) -> dict[str, int]:
        known, missing = {}, []
        for p in profiles:
            seq = self._staged.get((app, p), self._latest.get((app, p)))
            if seq is None:
                missing.append(p)
            else:
                known[p] = seq
        for i in range(0, len(missing), 900):
            chunk = missing[i : i + 900]
            rows = conn.execute(
                "SELECT profile, max(seq) FROM stream WHERE app = ?"
                f" AND profile IN ({_placeholders(len(chunk))}) GROUP BY profile",
                (app, *chunk),
            ).fetchall()
            found = dict(rows)
            for p in chunk:
                known[p] = self._latest[(app, p)] = found.get(p, 0)
        return known

    def stage(self, app: str, profile: str, seq: int) -> None:
        self._staged[(app, profile)] = seq

    def settle(self, committed: bool) -> None:
        if committed:
            if len(self._latest) > self._limit:
                self._latest.clear()  # cheap amortized bound; misses are read back from disk
            self._latest.update(self._staged)
        self._staged.clear()


def _append_stream(
    conn: sqlite3.Connection,
    seqs_cache: SeqCache,
    app: str,
    frame: Frame,
    targets: list[tuple[str, bytes]],
) -> list[int]:
    """One frame row, then one stream row per target with its next seq."""
    frame_id = conn.execute(
        "INSERT INTO frames(head, tail, created_at) VALUES (?, ?, ?)",
        (frame.head, frame.tail, time.time()),
    ).lastrowid
    latest = seqs_cache.latest(conn, app, list({p for p, _ in targets}))
    seqs: list[int] = []
    for profile, _ in targets:
        latest[profile] = seq = latest[profile] + 1
        seqs_cache.stage(app, profile, seq)
        seqs.append(seq)
    conn.executemany(
        "INSERT INTO stream(app, profile, seq, frame_id, mid) VALUES (?,?,?,?,?)",
        [(app, p, s, frame_id, mid) for (p, mid), s in zip(targets, seqs, strict=True)],
    )
    return seqs


def _insert_pushes(conn: sqlite3.Connection, app: str, pushes: list[PushEntry]) -> None:
    if pushes:
        conn.executemany(
            "INSERT INTO push_outbox(app, profile, kind, ref, title, body, data, created_at)"
            " VALUES (?,?,?,?,?,?,?,?)",
            [
                (app, p.profile, p.kind, p.ref, p.title, p.body, p.data, p.created_at)
                for p in pushes
            ],
        )


def _holders(conn: sqlite3.Connection, app: str, msg_id: str) -> list[tuple[str, str]]:
    """(profile, box) of every entry that still holds the message, found by primary key from
    its recipients and its sender, so boxes need no index by message."""
    row = conn.execute(
        "SELECT recipients, from_id FROM messages WHERE app = ? AND msg_id = ?", (app, msg_id)
    ).fetchone()
    if row is None:
        return []
    candidates = [(p, INBOX) for p in loads(row[0])]
    if row[1] is not None:
        candidates.append((row[1], SENT))
    held: list[tuple[str, str]] = []
    for i in range(0, len(candidates), 400):
        chunk = candidates[i : i + 400]
        pairs = " OR ".join(["(profile = ? AND msgbox = ?)"] * len(chunk))
        held += conn.execute(
            f"SELECT profile, msgbox FROM boxes WHERE app = ? AND msg_id = ? AND ({pairs})",
            (app, msg_id, *(v for pair in chunk for v in pair)),
        ).fetchall()
    return held


def _profiles(held: list[tuple[str, str]]) -> list[str]:
    return sorted({profile for profile, _ in held})


def _check_version(conn: sqlite3.Connection, app: str, msg_id: str, expected: int) -> None:
    row = conn.execute(
        "SELECT msg_ver FROM messages WHERE app = ? AND msg_id = ?", (app, msg_id)
    ).fetchone()
    if row is None:
        raise MessageNotFound(msg_id)
    if row[0] != expected:
        raise VersionMismatch(msg_id)


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

    def __init__(self, path: Path, *, stream_max_items: int, stream_max_seconds: float) -> None:
        self._db = Database(path)
        self._seqs = SeqCache()
        self._max_items = stream_max_items
        self._max_seconds = stream_max_seconds
        self.epoch = ""

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One transaction; the seqs it staged become the latest only if it commits."""
        return await self._db.transaction(fn, settled=self._seqs.settle)

    async def start(self) -> None:
        await self._db.open()

        def epoch(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('epoch', ?)", (uuid.uuid4().hex,)
            )
            return str(conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0])

        self.epoch = await self._write(epoch)

    async def check_epoch(self) -> bool:
        """The file is the only copy: its epoch changes only with a new file."""
        return False

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        await self._db.run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def sweep(self) -> None:
        max_items, cutoff, now = self._max_items, time.time() - self._max_seconds, time.time()

        def sweep(conn: sqlite3.Connection) -> None:
            # frame ids grow with time: everything before the first young frame is too old
            conn.execute(
                "DELETE FROM stream WHERE frame_id < (SELECT coalesce(min(id), 1 << 62)"
                " FROM frames WHERE created_at >= ?) AND seq < (SELECT max(s.seq) FROM stream s"
                " WHERE s.app = stream.app AND s.profile = stream.profile)",
                (cutoff,),
            )
            conn.execute(
                "DELETE FROM stream WHERE seq <= (SELECT max(s.seq) - ? FROM stream s"
                " WHERE s.app = stream.app AND s.profile = stream.profile)",
                (max_items,),
            )
            conn.execute("DELETE FROM frames WHERE id NOT IN (SELECT frame_id FROM stream)")
            conn.execute("DELETE FROM idempotency WHERE expires_at < ?", (now,))
            conn.execute("DELETE FROM s2s_sessions WHERE expires_at < ?", (now,))

        await self._write(sweep)

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
            conn.execute(
                "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    app,
                    m.msg_id,
                    m.from_id,
                    dumps(m.sender).decode(),
                    dumps(m.to).decode(),
                    m.sent_at,
                    m.content,
                    m.msg_cr,
                    m.msg_up,
                    m.msg_ver,
                    m.reply_to,
                ),
            )
            boxes = [(app, p, INBOX, m.msg_id, 0, m.msg_cr, m.msg_cr, 1) for p in inbox]
            if sent_by is not None:
                boxes.append((app, sent_by, SENT, m.msg_id, 1, m.msg_cr, m.msg_cr, 1))
            conn.executemany("INSERT INTO boxes VALUES (?,?,?,?,?,?,?,?)", boxes)
            _insert_pushes(conn, app, pushes)
            return _append_stream(conn, self._seqs, app, frame, list(zip(inbox, mids, strict=True)))

        return await self._write(write)

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
            _insert_pushes(conn, app, pushes)
            targets = [(e.to_id, mid) for e, mid in zip(events, mids, strict=True)]
            return _append_stream(conn, self._seqs, app, frame, targets)

        return await self._write(write)

    async def update_message(
        self, app: str, msg_id: str, expected_ver: int, content: bytes, now: int, frame: Frame
    ) -> list[tuple[str, int]]:
        def write(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            _check_version(conn, app, msg_id, expected_ver)
            conn.execute(
                "UPDATE messages SET content = ?, msg_up = ?, msg_ver = msg_ver + 1"
                " WHERE app = ? AND msg_id = ?",
                (content, now, app, msg_id),
            )
            holders = _profiles(_holders(conn, app, msg_id))
            seqs = _append_stream(conn, self._seqs, app, frame, [(p, b"") for p in holders])
            return list(zip(holders, seqs, strict=True))

        return await self._write(write)

    async def delete_message(
        self, app: str, msg_id: str, expected_ver: int, frame: Frame
    ) -> list[tuple[str, int]]:
        def write(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            _check_version(conn, app, msg_id, expected_ver)
            held = _holders(conn, app, msg_id)
            holders = _profiles(held)
            conn.executemany(
                "DELETE FROM boxes WHERE app = ? AND profile = ? AND msgbox = ? AND msg_id = ?",
                [(app, profile, box, msg_id) for profile, box in held],
            )
            conn.execute("DELETE FROM messages WHERE app = ? AND msg_id = ?", (app, msg_id))
            seqs = _append_stream(conn, self._seqs, app, frame, [(p, b"") for p in holders])
            return list(zip(holders, seqs, strict=True))

        return await self._write(write)

    async def get_messages(self, app: str, msg_ids: list[str]) -> list[Message]:
        def read(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages m"
                f" WHERE m.app = ? AND m.msg_id IN ({_placeholders(len(msg_ids))})",
                (app, *msg_ids),
            )
            found = {r[0]: _message(r) for r in rows}
            return [found[i] for i in msg_ids if i in found]

        return await self._db.run(read)

    async def get_entries(
        self, app: str, profile: str, box: str, msg_ids: list[str], mark_read_at: int | None
    ) -> list[BoxEntry]:
        def read(conn: sqlite3.Connection) -> list[BoxEntry]:
            if mark_read_at is not None:
                _mark_read(conn, app, profile, box, msg_ids, mark_read_at)
            rows = conn.execute(
                f"SELECT {_BOX_COLUMNS} FROM boxes b JOIN messages m"
                " ON m.app = b.app AND m.msg_id = b.msg_id"
                " WHERE b.app = ? AND b.profile = ? AND b.msgbox = ?"
                f" AND b.msg_id IN ({_placeholders(len(msg_ids))})",
                (app, profile, box, *msg_ids),
            )
            found = {r[5]: _entry(profile, r) for r in rows}
            return [found[i] for i in msg_ids if i in found]

        if mark_read_at is None:
            return await self._db.run(read)
        return await self._write(read)

    async def mark_read(
        self, app: str, profile: str, box: str, msg_ids: list[str], now: int
    ) -> int:
        return await self._write(lambda conn: _mark_read(conn, app, profile, box, msg_ids, now))

    async def delete_entries(self, app: str, profile: str, box: str, msg_ids: list[str]) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM boxes WHERE app = ? AND profile = ? AND msgbox = ?"
                f" AND msg_id IN ({_placeholders(len(msg_ids))})",
                (app, profile, box, *msg_ids),
            ).rowcount

        return await self._write(write)

    async def page(
        self, app: str, profile: str | None, query: Query
    ) -> tuple[int, list[BoxEntry] | list[Message]]:
        def read(conn: sqlite3.Connection) -> tuple[int, list[BoxEntry] | list[Message]]:
            params: list[Any] = [app]
            if profile is None:
                source = "FROM messages m WHERE m.app = ?"
                columns, tiebreak = _MESSAGE_COLUMNS, "m.msg_id"
            else:
                source = (
                    "FROM boxes b JOIN messages m ON m.app = b.app AND m.msg_id = b.msg_id"
                    " WHERE b.app = ? AND b.profile = ?"
                )
                params.append(profile)
                columns, tiebreak = _BOX_COLUMNS, "b.msgbox, b.msg_id"
            source += _where(query, params)
            count = conn.execute(f"SELECT count(*) {source}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT {columns} {source}{_order(query, tiebreak)} LIMIT ? OFFSET ?",
                (*params, query.rows, query.offset),
            ).fetchall()
            if profile is None:
                return count, [_message(r) for r in rows]
            return count, [_entry(profile, r) for r in rows]

        return await self._db.run(read)

    async def counts(self, app: str, profile: str) -> dict[str, dict[str, int]]:
        def read(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
            out = {box: {"total": 0, "unread": 0} for box in (INBOX, SENT)}
            for box, total, unread in conn.execute(
                "SELECT msgbox, count(*), sum(read = 0) FROM boxes"
                " WHERE app = ? AND profile = ? GROUP BY msgbox",
                (app, profile),
            ):
                out[box] = {"total": total, "unread": unread if box == INBOX else 0}
            return out

        return await self._db.run(read)

    async def get_events(self, app: str, profile: str) -> list[Event]:
        def read(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT ev_id, event_type, from_id, profile, created_at, data FROM events"
                " WHERE app = ? AND profile = ? ORDER BY created_at, ev_id",
                (app, profile),
            )
            return [Event(*r) for r in rows]

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
        self, app: str, profile: str, after: int, limit: int
    ) -> list[tuple[int, bytes]] | None:
        def read(conn: sqlite3.Connection) -> list[tuple[int, bytes]] | None:
            rows = conn.execute(
                "SELECT s.seq, s.mid, f.head, f.tail FROM stream s JOIN frames f"
                " ON f.id = s.frame_id WHERE s.app = ? AND s.profile = ? AND s.seq > ?"
                " ORDER BY s.seq LIMIT ?",
                (app, profile, after, limit),
            ).fetchall()
            latest_seq = self._seqs.latest(conn, app, [profile])[profile]
            if after > latest_seq:
                return None  # a cursor from the future: another database or epoch
            if latest_seq > after and (not rows or rows[0][0] != after + 1):
                return None  # the items right after the cursor were already dropped
            return [(seq, Frame(head, tail).render(seq, mid)) for seq, mid, head, tail in rows]

        return await self._db.run(read)

    async def latest_seq(self, app: str, profile: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return self._seqs.latest(conn, app, [profile])[profile]

        return await self._db.run(read)

    async def recall(self, app: str, key: str) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT response FROM idempotency WHERE app = ? AND key = ? AND expires_at >= ?",
                (app, key, time.time()),
            ).fetchone()
            return bytes(row[0]) if row else None

        return await self._db.run(read)

    async def remember(self, app: str, key: str, response: bytes, ttl: float) -> None:
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?)",
                (app, key, response, time.time() + ttl),
            )
        )

    async def get_s2s_session(self, session_id: str) -> S2SSession | None:
        def read(conn: sqlite3.Connection) -> S2SSession | None:
            row = conn.execute(
                "SELECT id, app, server, expires_at, last_packet, last_response"
                " FROM s2s_sessions WHERE id = ?",
                (session_id,),
            ).fetchone()
            return S2SSession(*row) if row else None

        return await self._db.run(read)

    async def save_s2s_session(self, session: S2SSession) -> None:
        s = session
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO s2s_sessions VALUES (?, ?, ?, ?, ?, ?)",
                (s.session_id, s.app, s.server, s.expires_at, s.last_packet, s.last_response),
            )
        )

    async def pending(self, app: str, profile: str | None, limit: int) -> list[PushEntry]:
        def read(conn: sqlite3.Connection) -> list[PushEntry]:
            sql = (
                "SELECT profile, kind, ref, title, body, data, created_at, id, attempts"
                " FROM push_outbox WHERE app = ?"
            )
            params: list[Any] = [app]
            if profile is not None:
                sql += " AND profile = ?"
                params.append(profile)
            rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*params, limit))
            return [
                PushEntry(r[0], r[1], r[2], r[3], r[4], r[5], r[6], str(r[7]), r[8]) for r in rows
            ]

        return await self._db.run(read)


def _mark_read(
    conn: sqlite3.Connection, app: str, profile: str, box: str, msg_ids: list[str], now: int
) -> int:
    marks = _placeholders(len(msg_ids))
    conn.execute(
        "UPDATE boxes SET read = 1, mb_up = ?, mb_ver = mb_ver + 1"
        f" WHERE app = ? AND profile = ? AND msgbox = ? AND read = 0 AND msg_id IN ({marks})",
        (now, app, profile, box, *msg_ids),
    )
    return int(
        conn.execute(
            "SELECT count(*) FROM boxes WHERE app = ? AND profile = ? AND msgbox = ?"
            f" AND msg_id IN ({marks})",
            (app, profile, box, *msg_ids),
        ).fetchone()[0]
    )
