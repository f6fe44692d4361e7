"""Piggybacked events on the local engine: events in their stream seq order (the `event_seqs`
table the store fills in the event's own transaction, emptied with its events by a trigger),
and each session's cursor in `piggyback_cursors`, read and moved in one transaction. A take that
hands nothing writes nothing (a cursor lives 2 x ttl and is renewed once half of that is gone);
cursors of idle sessions are deleted by the next write (indexed on expiry), so they never pile
up."""

from __future__ import annotations

import sqlite3
import time

from rtt.domain.events import Event, event_bytes
from rtt.domain.paging import fitting
from rtt.engines.local.database import Database


class LocalPiggyback:
    """engines/base.py `EventPiggyback` on one SQLite file."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def take(
        self, app: str, profile: str, session_id: str, max_count: int, max_bytes: int, ttl: float
    ) -> list[Event]:
        def write(conn: sqlite3.Connection) -> list[Event]:
            now = time.time()
            row = conn.execute(
                "SELECT seq, expires_at FROM piggyback_cursors WHERE session = ?", (session_id,)
            ).fetchone()
            live = row is not None and row[1] >= now
            after = row[0] if live else 0
            rows = conn.execute(
                "SELECT s.seq, e.ev_id, e.event_type, e.from_id, e.created_at, length(e.data)"
                " FROM event_seqs s JOIN events e"
                " ON e.app = s.app AND e.profile = s.profile AND e.ev_id = s.ev_id"
                " WHERE s.app = ? AND s.profile = ? AND s.seq > ? ORDER BY s.seq LIMIT ?",
                (app, profile, after, max_count),
            ).fetchall()
            sizes = [event_bytes(r[2], r[3], profile, r[5]) for r in rows]
            rows = rows[: fitting(sizes, max_bytes)]
            # a packet that takes nothing writes nothing, unless the cursor is past half its
            # lifetime of 2 x ttl: so it always outlives its session (ttl after the packet)
            if rows or (live and row[1] - now < ttl):
                conn.execute("DELETE FROM piggyback_cursors WHERE expires_at < ?", (now,))
                conn.execute(
                    "INSERT INTO piggyback_cursors VALUES (?, ?, ?)"
                    " ON CONFLICT(session) DO UPDATE SET seq = excluded.seq,"
                    " expires_at = excluded.expires_at",
                    (session_id, rows[-1][0] if rows else after, now + 2 * ttl),
                )
            if not rows:
                return []
            data = {
                ev_id: bytes(blob)
                for ev_id, blob in conn.execute(
                    "SELECT ev_id, data FROM events WHERE app = ? AND profile = ?"
                    f" AND ev_id IN ({', '.join('?' * len(rows))})",
                    (app, profile, *(r[1] for r in rows)),
                )
            }
            return [Event(r[1], r[2], r[3], profile, r[4], data[r[1]]) for r in rows]

        return await self._db.transaction(write)
