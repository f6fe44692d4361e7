"""What `/healthz` and `/readyz` answer."""

from __future__ import annotations

from typing import Literal

from rtt.api.schemas import Answer


class Health(Answer):
    """`ok`, or `unavailable` with the kind of failure (readiness only)."""

    status: Literal["ok", "unavailable"]
    error: str | None = None


class EngineState(Answer):
    kind: str
    ready: bool
    error: str | None = None


class Connections(Answer):
    sockets: int
    profiles: int


class OutboxTotals(Answer):
    depth: int
    dropped: int


class Status(Answer):
    """What `/status` answers (`rtt status`): this node's totals, nothing about any one app."""

    status: Literal["ok", "unavailable"]
    node: str
    version: str
    engine: EngineState
    connections: Connections
    outbox: OutboxTotals | None
