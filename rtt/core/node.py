"""The node: this process's settings, engine, hub and operations, built once by create_app and
handed to every front door and handler, so nothing reaches for a global."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rtt.engines.base import Engine
from rtt.metrics import Metrics
from rtt.realtime.hub import Hub
from rtt.settings import Settings

if TYPE_CHECKING:
    from rtt.core.registry import Operations


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every timestamp rtt returns."""
    return time.time_ns() // 1_000_000


@dataclass
class Node:
    settings: Settings
    engine: Engine
    hub: Hub
    operations: Operations
    metrics: Metrics
    reads: asyncio.Semaphore = field(init=False)
    """Client reads of many items run `settings.reads_in_flight` at a time, the others wait
    their turn in order: however many clients ask for big pages at once, the engine (the one
    SQLite thread, the Redis pool) keeps serving sends and everyone else between them."""

    def __post_init__(self) -> None:
        self.reads = asyncio.Semaphore(self.settings.reads_in_flight)
