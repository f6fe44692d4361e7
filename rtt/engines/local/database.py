"""One SQLite connection owned by one thread, so the event loop never waits on disk.

Every call is a plain function run on that thread; writes take `BEGIN IMMEDIATE` so a send is
one transaction. WAL with synchronous=NORMAL survives a process crash without an fsync per send
(a power cut can lose the last commits).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

SCHEMA_VERSION = 4
# In every table the columns queries filter and sort on come first and the large ones last:
# SQLite reads a row's columns in order, so reaching a column stored after a 128 KB value walks
# that value's overflow pages (35 µs a row), and a page of a box would read every content.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- one row per send: its recipients are its inbox entries (engines/local/index.py)
CREATE TABLE IF NOT EXISTS messages(
  no INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, msg_id TEXT NOT NULL, from_id TEXT,
  sent_by TEXT, sent_at INTEGER NOT NULL, msg_cr INTEGER NOT NULL, msg_up INTEGER NOT NULL,
  msg_ver INTEGER NOT NULL, reply_to TEXT, sender TEXT NOT NULL, recipients TEXT NOT NULL,
  content BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS messages_id ON messages(app, msg_id);
CREATE INDEX IF NOT EXISTS messages_cr ON messages(app, msg_cr);
-- a box entry its holder has read or deleted; untouched entries have no row
CREATE TABLE IF NOT EXISTS box_changes(
  app TEXT NOT NULL, profile TEXT NOT NULL, msg_no INTEGER NOT NULL, sent INTEGER NOT NULL,
  read INTEGER NOT NULL, mb_up INTEGER NOT NULL, mb_ver INTEGER NOT NULL,
  deleted INTEGER NOT NULL,
  PRIMARY KEY(app, profile, msg_no, sent)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS box_changes_msg ON box_changes(msg_no);
CREATE TABLE IF NOT EXISTS events(
  app TEXT NOT NULL, profile TEXT NOT NULL, ev_id TEXT NOT NULL, event_type TEXT NOT NULL,
  from_id TEXT, created_at INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY(app, profile, ev_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_order ON events(app, profile, created_at, ev_id);
CREATE INDEX IF NOT EXISTS events_age ON events(created_at);
-- one row per pushed frame: its targets, their seqs (packed int64) and per-target parts;
-- the sweep drops a frame once no profile's retained stream uses it
CREATE TABLE IF NOT EXISTS frames(
  id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, created_at REAL NOT NULL,
  profiles TEXT NOT NULL, seqs BLOB NOT NULL, mids BLOB NOT NULL, head BLOB NOT NULL,
  tail BLOB NOT NULL);
-- the first seq each profile's stream still keeps, once the sweep has trimmed it
CREATE TABLE IF NOT EXISTS stream_starts(
  app TEXT NOT NULL, profile TEXT NOT NULL, first INTEGER NOT NULL,
  PRIMARY KEY(app, profile)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push_outbox(
  id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, profile TEXT NOT NULL,
  kind TEXT NOT NULL, ref TEXT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
  created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS push_profile ON push_outbox(app, profile, id);
-- push entries retention dropped undelivered, per app (PushOutbox.dropped)
CREATE TABLE IF NOT EXISTS push_dropped(app TEXT PRIMARY KEY, count INTEGER NOT NULL)
  WITHOUT ROWID;
-- a claimed request key (Store.claim): pending (done = 0, response NULL) while its holder
-- runs it, then its recorded answer; the primary key is the claim
CREATE TABLE IF NOT EXISTS idempotency(
  app TEXT NOT NULL, key TEXT NOT NULL, expires_at REAL NOT NULL, fingerprint BLOB NOT NULL,
  token TEXT NOT NULL, done INTEGER NOT NULL, response BLOB,
  PRIMARY KEY(app, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS s2s_sessions(
  id TEXT PRIMARY KEY, app TEXT NOT NULL, server TEXT NOT NULL, expires_at REAL NOT NULL,
  last_packet INTEGER);
-- system-channel request nonces (SystemChannel.claim_nonce), dropped once expired
CREATE TABLE IF NOT EXISTS channel_nonces(
  app TEXT NOT NULL, nonce TEXT NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY(app, nonce)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS channel_nonces_age ON channel_nonces(app, expires_at);
-- system-channel senders (fromUserId): the app's recorded system identities
CREATE TABLE IF NOT EXISTS channel_senders(
  app TEXT NOT NULL, sender TEXT NOT NULL, PRIMARY KEY(app, sender)) WITHOUT ROWID;
-- brainCloud client API (engines/local/accounts.py): profiles, the identities that sign in to
-- them (the primary key makes an identity name one profile), sessions and socket secrets
CREATE TABLE IF NOT EXISTS accounts(
  app TEXT NOT NULL, profile TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY(app, profile)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS account_counts(app TEXT PRIMARY KEY, count INTEGER NOT NULL)
  WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS identities(
  app TEXT NOT NULL, kind TEXT NOT NULL, external_id TEXT NOT NULL, profile TEXT NOT NULL,
  secret BLOB, PRIMARY KEY(app, kind, external_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS client_sessions(
  id TEXT PRIMARY KEY, app TEXT NOT NULL, profile TEXT NOT NULL, name TEXT NOT NULL,
  expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS client_sessions_expiry ON client_sessions(expires_at);
CREATE TABLE IF NOT EXISTS rtt_secrets(
  secret TEXT PRIMARY KEY, session TEXT NOT NULL, app TEXT NOT NULL, profile TEXT NOT NULL,
  name TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rtt_secrets_expiry ON rtt_secrets(expires_at);
-- piggybacked events (engines/local/piggyback.py): each stored event's stream seq, in the
-- order events were committed; a row goes with its event, however the event is deleted
CREATE TABLE IF NOT EXISTS event_seqs(
  app TEXT NOT NULL, profile TEXT NOT NULL, seq INTEGER NOT NULL, ev_id TEXT NOT NULL,
  PRIMARY KEY(app, profile, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_seqs_id ON event_seqs(app, profile, ev_id);
CREATE TRIGGER IF NOT EXISTS event_seqs_gone AFTER DELETE ON events BEGIN
  DELETE FROM event_seqs WHERE app = old.app AND profile = old.profile AND ev_id = old.ev_id;
END;
-- the last event seq each client session was handed, dropped once the session is idle
CREATE TABLE IF NOT EXISTS piggyback_cursors(
  session TEXT PRIMARY KEY, seq INTEGER NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS piggyback_cursors_expiry ON piggyback_cursors(expires_at);
-- push entries held by a dispatcher or waiting for a retry: not claimable before `until`
CREATE TABLE IF NOT EXISTS push_claims(
  id INTEGER PRIMARY KEY, until REAL NOT NULL, holder TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS push_claims_until ON push_claims(until);
-- notifications given up after max_attempts (push/GET_DEAD_LETTERS), newest kept per app
CREATE TABLE IF NOT EXISTS push_dead(
  id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, item BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS push_dead_app ON push_dead(app, id);
-- delivered (item, destination) keys, so a retried entry does not notify twice
CREATE TABLE IF NOT EXISTS push_delivered(
  app TEXT NOT NULL, key TEXT NOT NULL, expires_at REAL NOT NULL,
  PRIMARY KEY(app, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS push_delivered_age ON push_delivered(expires_at);
-- per-profile notification rate: no notification before `until`
CREATE TABLE IF NOT EXISTS push_gates(
  app TEXT NOT NULL, profile TEXT NOT NULL, until REAL NOT NULL,
  PRIMARY KEY(app, profile)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS push_devices(
  app TEXT NOT NULL, profile TEXT NOT NULL, platform TEXT NOT NULL, token TEXT NOT NULL,
  registered_at INTEGER NOT NULL,
  PRIMARY KEY(app, profile, platform, token)) WITHOUT ROWID;
"""


def _check_version(conn: sqlite3.Connection) -> None:
    """Refuse a file laid out by another version rather than misread it."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if tables and version != SCHEMA_VERSION:
        conn.close()
        raise RuntimeError(
            f"this SQLite file has schema version {version}, this rtt needs {SCHEMA_VERSION}:"
            " start with a new --database file"
        )


class Database:
    """Runs functions against the connection on its own thread, one at a time."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtt-sqlite")
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> None:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        _check_version(conn)  # before anything writes to the file
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        # one node owns its file: no other process may write it (its indexes live in memory)
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA foreign_keys=OFF")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._conn = conn

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._open)

    async def close(self) -> None:
        """Close the connection, then wait for the thread off the loop: a job still queued
        behind the close (a late read, a sweep) must not stall every socket meanwhile."""
        if self._conn is not None:
            await self.run(lambda conn: conn.close())
            self._conn = None
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read (or a single statement) on the database thread."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    async def transaction(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        settled: Callable[[bool], None] | None = None,
    ) -> T:
        """Run `fn` inside one write transaction: it commits whole or not at all. `settled` is
        told, still on the database thread, whether it committed."""

        def wrapped(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                if settled is not None:
                    settled(False)
                raise
            if settled is not None:
                settled(True)
            return result

        return await self.run(wrapped)
