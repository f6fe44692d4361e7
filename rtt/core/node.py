"""The node: this process's settings, engine, hub and operations, built once by create_app and
handed to every front door and handler, so nothing reaches for a global."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rtt.engines.base import Engine
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
