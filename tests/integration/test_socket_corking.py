"""Corked writes: the frames a socket gets within one turn of the event loop leave in one
`transport.write`, and a lone frame on an idle socket leaves at the very next turn, on no timer.

The node runs in this test's event loop (tests/support/server.py), so the server side of a real
socket is at hand: its transport is wrapped to count the writes it is given (every write still
goes to the real transport and out over the real socket).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson

from rtt.websocket.frames import text_frame
from rtt.websocket.protocol import CORK_BYTES, WebSocketProtocol
from tests.support.raw_ws import CLOSE, TEXT, Raw, masked_frame, raw_socket
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for

HEARTBEAT = b'{"service":"rtt","operation":"HEARTBEAT","data":{}}'


class CountingTransport:
    """The server socket's real transport, counting the writes handed to it."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def server_side(server: RunningServer) -> WebSocketProtocol:
    """The one open WebSocket connection of `server`."""
    sockets = [
        c for c in server._server.server_state.connections if isinstance(c, WebSocketProtocol)
    ]
    assert len(sockets) == 1, sockets
    return sockets[0]


@asynccontextmanager
async def counted_socket(tmp_path: Path) -> AsyncIterator[tuple[Raw, WebSocketProtocol, Any]]:
    """A connected raw socket, its server side and the server side's counting transport."""
    async with running(settings_for(tmp_path)) as server, raw_socket(server.settings.port) as raw:
        connection = server_side(server)
        counting = CountingTransport(connection._transport)
        connection._transport = counting
        yield raw, connection, counting


async def test_frames_written_in_one_turn_leave_in_one_write(tmp_path: Path):
    async with asyncio.timeout(20), counted_socket(tmp_path) as (raw, connection, counting):
        payloads = [orjson.dumps({"n": n}) for n in range(5)]
        for payload in payloads:
            connection.write(text_frame(payload))
        assert counting.writes == [], "written at once: not corked"
        await asyncio.sleep(0)  # one turn of the loop
        assert counting.writes == [b"".join(text_frame(p) for p in payloads)]
        assert [await raw.recv() for _ in payloads] == [(TEXT, p) for p in payloads]


async def test_replies_to_one_read_leave_in_one_write(tmp_path: Path):
    """Three heartbeats in one TCP segment: the node answers each, in one write."""
    async with asyncio.timeout(20), counted_socket(tmp_path) as (raw, _, counting):
        raw.writer.write(b"".join(masked_frame(HEARTBEAT, TEXT) for _ in range(3)))
        replies = [orjson.loads((await raw.recv())[1]) for _ in range(3)]
        assert [r["operation"] for r in replies] == ["HEARTBEAT"] * 3
        assert len(counting.writes) == 1, counting.writes


async def test_a_lone_frame_on_an_idle_socket_leaves_at_the_next_turn(tmp_path: Path):
    """No timer: the frame is written by the first callback of the next turn of the loop."""
    async with asyncio.timeout(20), counted_socket(tmp_path) as (raw, connection, counting):
        await asyncio.sleep(0.05)  # idle
        connection.write(text_frame(b'{"lone":1}'))
        await asyncio.sleep(0)
        assert counting.writes == [text_frame(b'{"lone":1}')]
        assert await raw.recv() == (TEXT, b'{"lone":1}')


async def test_a_close_sends_the_corked_frames_before_the_close_frame(tmp_path: Path):
    async with asyncio.timeout(20), counted_socket(tmp_path) as (raw, connection, counting):
        connection.write(text_frame(b'{"last":1}'))
        connection.close(4000, "bye")
        assert counting.writes[0] == text_frame(b'{"last":1}')
        assert await raw.recv() == (TEXT, b'{"last":1}')
        opcode, payload = await raw.recv()
        assert (opcode, payload[:2]) == (CLOSE, (4000).to_bytes(2, "big"))


async def test_a_full_cork_is_written_at_once_not_held_for_the_turn(tmp_path: Path):
    """Fails if a cork grows past CORK_BYTES within one turn (a fan-out of big frames would
    hold them all in memory until the turn ends) instead of being written when full."""
    async with asyncio.timeout(20), counted_socket(tmp_path) as (raw, connection, counting):
        payload = b'"' + b"x" * (CORK_BYTES // 4) + b'"'
        for _ in range(5):
            connection.write(text_frame(payload))
        assert len(counting.writes) == 1, "a full cork waited for the next turn"
        assert len(counting.writes[0]) >= CORK_BYTES
        await asyncio.sleep(0)
        assert len(counting.writes) == 2  # the rest, at the next turn
        assert [await raw.recv() for _ in range(5)] == [(TEXT, payload)] * 5
