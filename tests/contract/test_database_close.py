"""Closing the local engine's database never stalls the event loop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rtt.engines.local.database import Database

JOB = 0.5  # a slow job on the database thread (a long sweep slice, a big read)


async def test_close_waits_for_the_database_thread_off_the_loop(tmp_path: Path) -> None:
    """Pins: `Database.close` shut its executor down with `wait=True` on the loop, so a job
    queued behind the close held every other task (sockets, timers) until it finished."""
    db = Database(tmp_path / "close.db")
    await db.open()
    closing = asyncio.create_task(db.close())
    await asyncio.sleep(0)  # the close is queued on the database thread
    late = asyncio.create_task(db.run(lambda _conn: time.sleep(JOB)))
    longest, last = 0.0, time.monotonic()
    while not closing.done():
        await asyncio.sleep(0.01)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    await closing
    await late
    assert longest < JOB / 2, f"the loop stalled {longest * 1000:.0f} ms"
