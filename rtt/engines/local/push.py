"""Push dispatch state on the embedded engine (PushState): leases, retries, dead letters,
dedupe keys, rate gates and devices, each step one SQLite transaction on the file's one thread.

An outbox row is claimable while it has no `push_claims` row, or its row's `until` has passed
(a lease that lapsed because its dispatcher died, or a retry that is due). New rows are found
past a watermark (row ids only grow), lapsed and due ones through the index on `until`, so a
claim never scans the entries that wait.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import orjson

from rtt.domain.notification import dead_item
from rtt.domain.push import PushEntry
from rtt.engines.base import Claimed, Device
from rtt.engines.local.database import Database

CHUNK = 500  # ids per IN (...) list, well under SQLite's limit of bound parameters
_ENTRY = "o.id, o.app, o.profile, o.kind, o.ref, o.title, o.body, o.data, o.created_at, o.attempts"


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _claimed(row: tuple[Any, ...]) -> Claimed:
    return Claimed(
        row[1],
        PushEntry(row[2], row[3], row[4], row[5], row[6], row[7], row[8], str(row[0]), row[9]),
    )


def _statement(sql: str, rows: list[tuple[Any, ...]]) -> Callable[[sqlite3.Connection], None]:
    """A job running `sql` once per row. It returns nothing: a cursor handed back to the event
    loop and finalized there would touch the connection off its thread."""

    def run(conn: sqlite3.Connection) -> None:
        conn.executemany(sql, rows)

    return run


class LocalPush:
    """PushState for the node that owns the file; see engines/base.py for the guarantees."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._seen = 0  # every outbox row at or below this id has been claimed once

    async def claim(self, apps: list[str], worker: str, limit: int, lease: float) -> list[Claimed]:
        if not apps:
            return []

        def claim(conn: sqlite3.Connection) -> tuple[list[Claimed], int]:
            now = time.time()
            marks = _marks(len(apps))
            rows = conn.execute(
                f"SELECT {_ENTRY} FROM push_claims c JOIN push_outbox o ON o.id = c.id"
                f" WHERE c.until <= ? AND o.app IN ({marks}) ORDER BY c.until LIMIT ?",
                (now, *apps, limit),
            ).fetchall()
            if len(rows) < limit:
                fresh = conn.execute(
                    f"SELECT {_ENTRY} FROM push_outbox o WHERE o.id > ? AND o.app IN ({marks})"
                    " AND NOT EXISTS (SELECT 1 FROM push_claims c WHERE c.id = o.id)"
                    " ORDER BY o.id LIMIT ?",
                    (self._seen, *apps, limit - len(rows)),
                ).fetchall()
                rows += fresh
            seen = max([self._seen, *(r[0] for r in rows)])
            conn.executemany(
                "INSERT OR REPLACE INTO push_claims(id, until, holder) VALUES (?,?,?)",
                [(r[0], now + lease, worker) for r in rows],
            )
            return [_claimed(r) for r in rows], seen

        claimed, self._seen = await self._db.transaction(claim)  # only once it committed
        return claimed

    async def renew(self, held: list[Claimed], worker: str, lease: float) -> None:
        rows = [(time.time() + lease, int(c.entry.push_id), worker) for c in held]
        await self._db.transaction(
            _statement("UPDATE push_claims SET until = ? WHERE id = ? AND holder = ?", rows)
        )

    async def done(self, app: str, push_ids: list[str]) -> None:
        ids = [(int(i),) for i in push_ids]

        def settle(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM push_outbox WHERE id = ?", ids)
            conn.executemany("DELETE FROM push_claims WHERE id = ?", ids)

        if ids:
            await self._db.transaction(settle)

    async def retry(
        self, app: str, entries: list[PushEntry], delay: float, attempt: bool, lease: float
    ) -> None:
        until = time.time() + delay

        def release(conn: sqlite3.Connection) -> None:
            ids = [(int(e.push_id),) for e in entries]
            conn.executemany(
                "UPDATE push_claims SET until = ? WHERE id = ?", [(until, *i) for i in ids]
            )
            if attempt:
                conn.executemany("UPDATE push_outbox SET attempts = attempts + 1 WHERE id = ?", ids)

        if entries:
            await self._db.transaction(release)

    async def dead(self, app: str, entries: list[PushEntry], error: str, keep: int) -> None:
        now_ms = time.time_ns() // 1_000_000

        def bury(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "INSERT INTO push_dead(app, item) VALUES (?, ?)",
                [(app, dead_item(e, error, e.attempts + 1, now_ms)) for e in entries],
            )
            ids = [(int(e.push_id),) for e in entries]
            conn.executemany("DELETE FROM push_outbox WHERE id = ?", ids)
            conn.executemany("DELETE FROM push_claims WHERE id = ?", ids)
            conn.execute(
                "DELETE FROM push_dead WHERE app = ? AND id NOT IN"
                " (SELECT id FROM push_dead WHERE app = ? ORDER BY id DESC LIMIT ?)",
                (app, app, keep),
            )

        if entries:
            await self._db.transaction(bury)

    async def dead_letters(self, app: str, limit: int) -> list[dict[str, object]]:
        def read(conn: sqlite3.Connection) -> list[dict[str, object]]:
            rows = conn.execute(
                "SELECT item FROM push_dead WHERE app = ? ORDER BY id LIMIT ?", (app, limit)
            )
            return [orjson.loads(r[0]) for r in rows]

        return await self._db.run(read)

    async def depth(self, app: str) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute("SELECT count(*) FROM push_outbox WHERE app = ?", (app,)).fetchone()[0]
            )

        return await self._db.run(read)

    async def delivered(self, app: str, keys: list[str]) -> set[str]:
        def read(conn: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(keys), CHUNK):
                part = keys[i : i + CHUNK]
                rows = conn.execute(
                    "SELECT key FROM push_delivered WHERE app = ? AND expires_at > ?"
                    f" AND key IN ({_marks(len(part))})",
                    (app, time.time(), *part),
                )
                found.update(r[0] for r in rows)
            return found

        return await self._db.run(read) if keys else set()

    async def record_delivered(self, app: str, keys: list[str], ttl: float) -> None:
        rows = [(app, k, time.time() + ttl) for k in keys]
        if rows:
            await self._db.transaction(
                _statement(
                    "INSERT OR REPLACE INTO push_delivered(app, key, expires_at) VALUES (?,?,?)",
                    rows,
                )
            )

    async def gate(self, app: str, profiles: list[str], interval: float) -> dict[str, float]:
        def take(conn: sqlite3.Connection) -> dict[str, float]:
            now = time.time()
            waits = dict(
                conn.execute(
                    f"SELECT profile, until - ? FROM push_gates WHERE app = ?"
                    f" AND profile IN ({_marks(len(profiles))}) AND until > ?",
                    (now, app, *profiles, now),
                ).fetchall()
            )
            free = [p for p in profiles if p not in waits]
            conn.executemany(
                "INSERT OR REPLACE INTO push_gates(app, profile, until) VALUES (?,?,?)",
                [(app, p, now + interval) for p in free],
            )
            return {p: float(waits.get(p, 0.0)) for p in profiles}

        if interval <= 0:  # no rate: nothing to remember
            return dict.fromkeys(profiles, 0.0)
        return await self._db.transaction(take) if profiles else {}

    async def add_device(self, app: str, profile: str, device: Device, max_devices: int) -> None:
        def add(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO push_devices VALUES (?,?,?,?,?)",
                (app, profile, device.platform, device.token, device.registered_at),
            )
            conn.execute(
                "DELETE FROM push_devices WHERE app = ? AND profile = ? AND (platform, token)"
                " NOT IN (SELECT platform, token FROM push_devices WHERE app = ? AND profile = ?"
                " ORDER BY registered_at DESC, platform, token LIMIT ?)",
                (app, profile, app, profile, max_devices),
            )

        await self._db.transaction(add)

    async def remove_device(self, app: str, profile: str, platform: str, token: str) -> None:
        await self._db.transaction(
            _statement(
                "DELETE FROM push_devices WHERE app = ? AND profile = ? AND platform = ?"
                " AND token = ?",
                [(app, profile, platform, token)],
            )
        )

    async def remove_devices(self, app: str, profile: str) -> None:
        await self._db.transaction(
            _statement("DELETE FROM push_devices WHERE app = ? AND profile = ?", [(app, profile)])
        )

    async def devices(self, app: str, profiles: list[str]) -> dict[str, list[Device]]:
        def read(conn: sqlite3.Connection) -> dict[str, list[Device]]:
            found: dict[str, list[Device]] = {}
            for i in range(0, len(profiles), CHUNK):
                part = profiles[i : i + CHUNK]
                rows = conn.execute(
                    "SELECT profile, platform, token, registered_at FROM push_devices"
                    f" WHERE app = ? AND profile IN ({_marks(len(part))})"
                    " ORDER BY registered_at, platform, token",
                    (app, *part),
                )
                for profile, platform, token, at in rows:
                    found.setdefault(profile, []).append(Device(platform, token, at))
            return found

        return await self._db.run(read) if profiles else {}

    async def sweep(self) -> None:
        def expire(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("DELETE FROM push_delivered WHERE expires_at <= ?", (now,))
            conn.execute("DELETE FROM push_gates WHERE until <= ?", (now,))
            conn.execute(
                "DELETE FROM push_claims WHERE until <= ?"
                " AND id NOT IN (SELECT id FROM push_outbox)",
                (now,),
            )

        await self._db.transaction(expire)

    async def close(self) -> None:
        """Nothing of its own to close: the store closes the file."""
