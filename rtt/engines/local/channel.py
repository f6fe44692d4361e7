"""The system channel's state on the embedded engine (SystemChannel). One node owns the file,
so the rate bucket lives in this process (one per app, as many as the config names); nonces and
senders are rows claimed in one SQLite transaction each, so a restart forgets neither (a
request replayed to a restarted node within its window is still refused)."""

from __future__ import annotations

import sqlite3
import time

from rtt.domain.push import PushEntry
from rtt.engines.base import NonceClaim
from rtt.engines.local.database import Database
from rtt.engines.local.store import insert_pushes


class LocalChannel:
    """SystemChannel for one node; see engines/base.py for the guarantees."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._buckets: dict[str, tuple[float, float]] = {}  # app → (tokens, stamp)

    async def claim_nonce(self, app: str, nonce: str, ttl: float, max_live: int) -> NonceClaim:
        def claim(conn: sqlite3.Connection) -> NonceClaim:
            now = time.time()
            conn.execute("DELETE FROM channel_nonces WHERE app = ? AND expires_at <= ?", (app, now))
            if conn.execute(
                "SELECT 1 FROM channel_nonces WHERE app = ? AND nonce = ?", (app, nonce)
            ).fetchone():
                return NonceClaim.REPLAYED
            (live,) = conn.execute(
                "SELECT count(*) FROM channel_nonces WHERE app = ?", (app,)
            ).fetchone()
            if live >= max_live:
                return NonceClaim.FULL
            conn.execute(
                "INSERT INTO channel_nonces(app, nonce, expires_at) VALUES (?,?,?)",
                (app, nonce, now + ttl),
            )
            return NonceClaim.FRESH

        return await self._db.transaction(claim)

    async def take_rate(self, app: str, count: int, rate: int) -> bool:
        now = time.monotonic()
        tokens, stamp = self._buckets.get(app, (float(rate), now))
        tokens = min(float(rate), tokens + (now - stamp) * rate)
        taken = tokens >= min(count, rate)
        self._buckets[app] = (tokens - count if taken else tokens, now)
        return taken

    async def add_sender(self, app: str, sender: str, max_senders: int) -> bool:
        def add(conn: sqlite3.Connection) -> bool:
            if conn.execute(
                "SELECT 1 FROM channel_senders WHERE app = ? AND sender = ?", (app, sender)
            ).fetchone():
                return True
            (count,) = conn.execute(
                "SELECT count(*) FROM channel_senders WHERE app = ?", (app,)
            ).fetchone()
            if count >= max_senders:
                return False
            conn.execute("INSERT INTO channel_senders(app, sender) VALUES (?,?)", (app, sender))
            return True

        return await self._db.transaction(add)

    async def senders_among(self, app: str, profiles: list[str]) -> set[str]:
        def read(conn: sqlite3.Connection) -> set[str]:
            marks = ",".join("?" * len(profiles))
            rows = conn.execute(
                f"SELECT sender FROM channel_senders WHERE app = ? AND sender IN ({marks})",
                (app, *profiles),
            )
            return {row[0] for row in rows}

        return await self._db.run(read) if profiles else set()

    async def queue_pushes(self, app: str, pushes: list[PushEntry]) -> None:
        if pushes:
            await self._db.transaction(lambda conn: insert_pushes(conn, app, pushes))

    async def close(self) -> None:
        """Nothing of its own to close: the store closes the file."""
