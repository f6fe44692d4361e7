"""What every handler may use: this node's settings and engine, and the clock."""

from __future__ import annotations

import time
from dataclasses import dataclass

from rtt.engines.base import Engine
from rtt.settings import Settings


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every timestamp rtt returns."""
    return time.time_ns() // 1_000_000


@dataclass
class Core:
    settings: Settings
    engine: Engine
