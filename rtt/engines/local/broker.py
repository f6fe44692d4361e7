"""In-process broker: a publish is a direct call into this node's hub."""

from __future__ import annotations

from collections.abc import Callable

from rtt.engines.base import Fanout


class LocalBroker:
    """Delivery is synchronous and in order; there is no other node to hear it."""

    def __init__(self) -> None:
        self._handler: Callable[[Fanout], None] | None = None

    async def start(self, handler: Callable[[Fanout], None], on_gap: Callable[[], None]) -> None:
        self._handler = handler

    def healthy(self) -> bool:
        return True

    async def publish(self, fanout: Fanout) -> None:
        if self._handler is not None:
            self._handler(fanout)

    async def close(self) -> None:
        self._handler = None
