"""What an idle socket keeps: nothing of the HTTP request that opened it.

A node's memory per idle socket is a benchmark target (BENCHMARKS.md); this pins the largest
cut behind it, against an in-process node so the test can see the node's objects.
"""

from __future__ import annotations

import gc

from rtt.http_protocol import EdgeHttpProtocol
from rtt.websocket.protocol import WebSocketProtocol
from tests.support.raw_ws import open_raw_in_pieces
from tests.support.server import RunningServer

SOCKETS = 5


def _upgraded_http_protocols() -> list[EdgeHttpProtocol]:
    """HTTP protocols whose connection a WebSocket now owns: dead objects still in memory."""
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, EdgeHttpProtocol)
        and o.transport is not None
        and isinstance(o.transport.get_protocol(), WebSocketProtocol)
    ]


async def test_an_upgrade_frees_the_http_protocol_at_once(server: RunningServer) -> None:
    """Pins: httptools' parser and uvicorn's HTTP protocol refer to each other, so after the
    upgrade the pair (with the request's scope and headers, ~1 KiB) waited for the cycle
    collector, which the node runs rarely (rtt/interpreter.py): 5.0 KiB of RSS per idle socket
    at 5 000 sockets. Now they are freed by the upgrade itself. The collector is off while the
    sockets open, so only what reference counting frees is gone."""
    gc.collect()
    gc.disable()
    try:
        sockets = [
            await open_raw_in_pieces(server.settings.port, f"idle{i}") for i in range(SOCKETS)
        ]
        leftovers = _upgraded_http_protocols()
    finally:
        gc.enable()
    try:
        assert len(sockets) == SOCKETS
        assert leftovers == [], f"{len(leftovers)} HTTP protocols outlived their upgrade"
    finally:
        for raw in sockets:
            raw.writer.close()
