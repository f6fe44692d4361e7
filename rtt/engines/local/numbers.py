"""Message numbers on the local engine: a message's row key (`messages.no`), which SQLite gives
in the transaction that stores it. AUTOINCREMENT never hands a number out twice, even after a
delete, and one node owns its file, so numbers are unique with nothing added to a send."""

from __future__ import annotations

import sqlite3

from rtt.engines.local.database import Database


class SqliteMessageNumbers:
    """MessageNumbers on the node's SQLite file (see engines/base.py)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def numbers(self, app: str, msg_ids: list[str]) -> dict[str, int]:
        def read(conn: sqlite3.Connection) -> dict[str, int]:
            marks = ",".join("?" * len(msg_ids))
            rows = conn.execute(
                f"SELECT msg_id, no FROM messages WHERE app = ? AND msg_id IN ({marks})",
                (app, *msg_ids),
            )
            return {msg_id: no for msg_id, no in rows}

        return await self._db.run(read) if msg_ids else {}

    async def message_id(self, app: str, number: int) -> str | None:
        def read(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT msg_id FROM messages WHERE no = ? AND app = ?", (number, app)
            ).fetchone()
            return str(row[0]) if row else None

        return await self._db.run(read)

    async def window(
        self, app: str, descending: bool, start: int, limit: int
    ) -> tuple[int, list[tuple[int, str]]]:
        order = "DESC" if descending else "ASC"

        def read(conn: sqlite3.Connection) -> tuple[int, list[tuple[int, str]]]:
            total = conn.execute("SELECT count(*) FROM messages WHERE app = ?", (app,)).fetchone()
            rows = conn.execute(
                f"SELECT no, msg_id FROM messages WHERE app = ? ORDER BY no {order}"
                " LIMIT ? OFFSET ?",
                (app, limit, start),
            ).fetchall()
            return int(total[0]), [(int(no), str(msg_id)) for no, msg_id in rows]

        return await self._db.run(read)
