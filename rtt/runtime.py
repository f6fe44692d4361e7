"""A running node: settings, engine, hub and core, built once by create_app."""

from __future__ import annotations

from dataclasses import dataclass

from rtt.core.node import Core
from rtt.engines.base import Engine
from rtt.realtime.hub import Hub
from rtt.settings import Settings


@dataclass
class Node:
    settings: Settings
    engine: Engine
    hub: Hub
    core: Core
