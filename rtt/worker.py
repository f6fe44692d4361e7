"""`rtt push-worker`: a push dispatcher in a process of its own, beside or instead of the ones
inside the nodes (RTT_PUSH_DISPATCHER=false turns those off).

On the redis engine any number of workers and nodes drain together (a consumer group). On the
local engine the SQLite file belongs to one process (it is opened with an exclusive lock), so
a worker can only drain a file no node holds, e.g. after its node stopped.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sqlite3

from rtt.app import build_engine
from rtt.core.push_dispatch import Dispatcher
from rtt.push.providers import Providers
from rtt.settings import Settings
from rtt.tasks import stop_task

log = logging.getLogger("rtt.push")


async def push_worker(settings: Settings) -> None:
    """Drain until SIGTERM or SIGINT, then close what it opened."""
    engine = build_engine(settings)
    try:
        await engine.store.start()
    except sqlite3.OperationalError as e:  # the local file is held by a node
        raise SystemExit(
            f"rtt push-worker: cannot open {settings.database}: {e}; on the local engine the"
            " node that holds the file drains it itself"
        ) from None
    providers = Providers(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    dispatcher = Dispatcher(settings, engine, providers.apps)
    log.info(
        "push worker %s draining %s", dispatcher.worker, ", ".join(providers.apps) or "nothing"
    )
    task = asyncio.create_task(dispatcher.run())
    try:
        await stop.wait()
    finally:
        await stop_task(task)
        await providers.close()
        await engine.close()
