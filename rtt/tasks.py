"""Stopping a background task so that it really stops."""

from __future__ import annotations

import asyncio
from typing import Any

RECANCEL_AFTER = 0.1


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has ended, cancelling again while it runs on.

    One cancel is not always enough on Python 3.11: `asyncio.wait_for` (used inside redis-py)
    returns its result instead of raising when the cancel lands just as its inner call
    completes, so a `while True` loop would carry on for ever and hang the node's shutdown.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=RECANCEL_AFTER)
    if not task.cancelled():
        task.exception()  # retrieved: a loop that died earlier was already logged by its owner
