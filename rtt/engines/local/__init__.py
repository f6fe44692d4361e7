"""The embedded engine: one SQLite file and in-process fan-out; a single node needs nothing else."""

from __future__ import annotations

from pathlib import Path

from rtt.engines.base import DEFAULT_RETENTION, Engine, Retention
from rtt.engines.local.accounts import LocalAccounts
from rtt.engines.local.broker import LocalBroker
from rtt.engines.local.channel import LocalChannel
from rtt.engines.local.numbers import SqliteMessageNumbers
from rtt.engines.local.piggyback import LocalPiggyback
from rtt.engines.local.presence import LocalPresence
from rtt.engines.local.push import LocalPush
from rtt.engines.local.store import SqliteStore


def local_engine(
    database: Path,
    *,
    stream_max_items: int,
    stream_max_seconds: float,
    retention: Retention = DEFAULT_RETENTION,
) -> Engine:
    store = SqliteStore(
        database,
        stream_max_items=stream_max_items,
        stream_max_seconds=stream_max_seconds,
        retention=retention,
    )
    return Engine(
        store=store,
        outbox=store,
        broker=LocalBroker(),
        presence=LocalPresence(),
        channel=LocalChannel(store.database),
        numbers=SqliteMessageNumbers(store.database),
        accounts=LocalAccounts(store.database),
        piggyback=LocalPiggyback(store.database),
        push=LocalPush(store.database),
    )
