"""Per-item work over very long lists, done in slices with the event loop served in between.

A send to 100 000 recipients builds 100 000 of everything (push entries, per-target parts,
Redis key names, pub/sub targets); built in one piece that holds every other socket's
heartbeat for tens of milliseconds. Every layer that builds such a list uses this one helper,
and a list of at most SLICE items (the common send) is built in one piece, with no await added.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TypeVar

SLICE = 4096  # items per turn of the event loop: about a millisecond of Python work

T = TypeVar("T")
R = TypeVar("R")


async def sliced(items: Sequence[T], make: Callable[[Sequence[T]], list[R]]) -> list[R]:
    """`make(items)`, computed SLICE items at a time with the loop served in between."""
    if len(items) <= SLICE:
        return make(items)
    out: list[R] = []
    for start in range(0, len(items), SLICE):
        if start:
            await asyncio.sleep(0)
        out += make(items[start : start + SLICE])
    return out


async def pieces(items: Sequence[T], make: Callable[[Sequence[T]], R]) -> list[R]:
    """`make` applied to each SLICE-long piece of `items`, the loop served in between: for
    work whose result is one value per piece (an encoded chunk, a reply)."""
    out: list[R] = []
    for start in range(0, len(items), SLICE):
        if start:
            await asyncio.sleep(0)
        out.append(make(items[start : start + SLICE]))
    return out
