"""Importing this registers every operation; front doors then reach them through `dispatch`."""

from rtt.core import events, messaging, system
from rtt.core.registry import OPERATIONS, dispatch

__all__ = ["OPERATIONS", "dispatch", "events", "messaging", "system"]
