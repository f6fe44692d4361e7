"""Accounts on the local engine: profiles, identities, client sessions and socket secrets in the
store's SQLite file, on its one database thread. Each write is one transaction, so an identity
is created whole (profile, identity, the app's count) or not at all. Expired sessions and
secrets are deleted by the write that adds new ones (indexed on expiry), so they never pile up."""

from __future__ import annotations

import sqlite3
import time

from rtt.engines.base import Account, AccountLimit, ClientSession
from rtt.engines.local.database import Database


def _identity(conn: sqlite3.Connection, app: str, kind: str, external_id: str) -> Account | None:
    """The account an identity signs in to, read in the caller's transaction."""
    row = conn.execute(
        "SELECT i.profile, a.name, a.created_at, i.secret FROM identities i"
        " JOIN accounts a ON a.app = i.app AND a.profile = i.profile"
        " WHERE i.app = ? AND i.kind = ? AND i.external_id = ?",
        (app, kind, external_id),
    ).fetchone()
    if row is None:
        return None
    return Account(row[0], row[1], row[2], bytes(row[3]) if row[3] is not None else None)


class LocalAccounts:
    """engines/base.py `Accounts` on one SQLite file."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def find(self, app: str, kind: str, external_id: str) -> Account | None:
        return await self._db.run(lambda conn: _identity(conn, app, kind, external_id))

    async def create(
        self, app: str, kind: str, external_id: str, account: Account, max_accounts: int
    ) -> tuple[Account, bool]:
        def write(conn: sqlite3.Connection) -> tuple[Account, bool] | None:
            existing = _identity(conn, app, kind, external_id)
            if existing is not None:
                return existing, False
            count = conn.execute(
                "SELECT count FROM account_counts WHERE app = ?", (app,)
            ).fetchone()
            if count is not None and count[0] >= max_accounts:
                return None
            conn.execute(
                "INSERT INTO accounts VALUES (?, ?, ?, ?)",
                (app, account.profile, account.name, account.created_at),
            )
            conn.execute(
                "INSERT INTO identities VALUES (?, ?, ?, ?, ?)",
                (app, kind, external_id, account.profile, account.secret),
            )
            conn.execute(
                "INSERT INTO account_counts VALUES (?, 1)"
                " ON CONFLICT(app) DO UPDATE SET count = count + 1",
                (app,),
            )
            return account, True

        result = await self._db.transaction(write)
        if result is None:
            raise AccountLimit(app)
        return result

    async def open_session(self, session: ClientSession) -> None:
        s = session

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM client_sessions WHERE expires_at < ?", (time.time(),))
            conn.execute(
                "INSERT INTO client_sessions VALUES (?, ?, ?, ?, ?)",
                (s.session_id, s.app, s.profile, s.name, s.expires_at),
            )

        await self._db.transaction(write)

    async def touch_session(self, session_id: str, ttl: float) -> ClientSession | None:
        def write(conn: sqlite3.Connection) -> ClientSession | None:
            now = time.time()
            row = conn.execute(
                "UPDATE client_sessions SET expires_at = ? WHERE id = ? AND expires_at >= ?"
                " RETURNING id, app, profile, name, expires_at",
                (now + ttl, session_id, now),
            ).fetchone()
            return ClientSession(*row) if row else None

        return await self._db.transaction(write)

    async def issue_rtt_secret(self, secret: str, session: ClientSession, ttl: float) -> None:
        s = session

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute("DELETE FROM rtt_secrets WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO rtt_secrets VALUES (?, ?, ?, ?, ?, ?)",
                (secret, s.session_id, s.app, s.profile, s.name, now + ttl),
            )

        await self._db.transaction(write)

    async def take_rtt_secret(self, secret: str) -> ClientSession | None:
        def write(conn: sqlite3.Connection) -> ClientSession | None:
            row = conn.execute(
                "DELETE FROM rtt_secrets WHERE secret = ?"
                " RETURNING session, app, profile, name, expires_at",
                (secret,),
            ).fetchone()
            if row is None or row[4] < time.time():
                return None
            return ClientSession(*row)

        return await self._db.transaction(write)
