"""Bounded polling for tests that wait on another process: never an unbounded wait."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool] = bool,
    *,
    timeout: float = 5.0,
    interval: float = 0.02,
    what: str = "condition",
) -> tuple[T, float]:
    """Poll `probe` until `accept(result)`; return (result, seconds waited) or fail the test."""
    started = time.monotonic()
    while True:
        last = await probe()
        elapsed = time.monotonic() - started
        if accept(last):
            return last, elapsed
        if elapsed > timeout:
            raise AssertionError(f"{what} not reached within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)
