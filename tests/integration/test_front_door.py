"""The front door (rtt/front_door.py): a whole, plain WebSocket upgrade request in the first read
goes straight to the WebSocket protocol; anything else goes to the HTTP protocol with the same
limits as if it had owned the connection since accept."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import pytest

from rtt.front_door import websocket_request
from rtt.http_protocol import EdgeHttpProtocol
from tests.support.clients import open_socket
from tests.support.raw_http import RawConnection, parse
from tests.support.raw_ws import open_raw_in_pieces, upgrade_request
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for
from tests.support.waits import eventually

LIMIT = 16 * 1024
PLAIN = upgrade_request("/rtt?token=abc")


@pytest.mark.parametrize(
    ("request_bytes", "straight"),
    [
        (PLAIN, True),
        (PLAIN.replace(b"Upgrade: websocket", b"upgrade: WebSocket"), True),
        (PLAIN.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"), True),
        (PLAIN + b"\x81\x80", False),  # bytes after the head: let uvicorn's parser judge
        (PLAIN[:-2], False),  # the head not complete yet
        (PLAIN.replace(b"Connection: Upgrade", b"Connection: keep-alive"), False),
        (PLAIN.replace(b"Connection: Upgrade", b"Connection: upgrade-insecure"), False),
        (PLAIN.replace(b"Upgrade: websocket", b"Upgrade: websocket2"), False),
        (PLAIN.replace(b"GET ", b"POST "), False),
        (PLAIN.replace(b"HTTP/1.1", b"HTTP/1.0"), False),
        (PLAIN.replace(b"Host: localhost", b"Host: local\xc3\xa9"), False),  # not ASCII
        (PLAIN.replace(b"Host: localhost\r\n", b"Host: localhost\r\n folded\r\n"), False),
        (PLAIN.replace(b"Host: localhost", b"Host localhost"), False),  # no colon
        (PLAIN.replace(b"\r\n\r\n", b"\r\nX-Pad: " + b"a" * LIMIT + b"\r\n\r\n"), False),
    ],
)
def test_which_first_reads_go_straight_to_the_websocket_protocol(request_bytes, straight):
    """Fails if anything but one whole, plain upgrade request (what uvicorn would upgrade)
    skips uvicorn's HTTP parser, or such a request does not."""
    assert websocket_request(request_bytes, LIMIT) is straight


async def test_a_socket_opened_in_one_write_never_builds_an_http_protocol(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
):
    """Pins: every socket used to get a uvicorn HTTP protocol (an httptools parser, a scope, its
    request written out again for the WebSocket protocol): 31 % of a connect's CPU. Now a
    whole upgrade request in the first read builds none; an HTTP request still does. (The
    door's HTTP protocol class is wrapped to count what it builds; it works as before.)"""
    door = server.protocol_class
    built: list[EdgeHttpProtocol] = []

    class Counted(door.http):  # type: ignore[name-defined, misc]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(door, "http", Counted)
    sockets = [await open_socket(server, f"door{i}") for i in range(5)]  # each CONNECTed
    assert built == []
    probe = await RawConnection.open(server.settings.port, b"GET /healthz HTTP/1.1\r\n\r\n")
    assert (await probe.response()).status == 200
    probe.close()
    for rtt in sockets:
        await rtt.close()
    assert len(built) == 1


async def test_an_upgrade_request_in_pieces_still_opens_a_socket(server: RunningServer):
    """Fails if a head that arrives in two reads (uvicorn's parser path) no longer upgrades."""
    raw = await open_raw_in_pieces(server.settings.port, "pieces")
    raw.writer.close()


async def test_the_head_deadline_counts_from_accept_through_the_door(tmp_path: Path):
    """Fails if the door hands a late first byte to the HTTP protocol with a fresh deadline: a
    peer could then double its time by saying one byte just before the deadline."""
    head = 2.0
    settings = settings_for(tmp_path, http_header_timeout_seconds=head)
    async with running(settings) as node:
        connection = await RawConnection.open(node.settings.port)
        started = time.monotonic()
        await asyncio.sleep(head * 0.8)
        await connection.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")  # not a whole head
        raw = await connection.until_closed(head * 2)
        elapsed = time.monotonic() - started
        connection.close()
    answer = parse(raw)
    assert answer is not None and answer.status == 408, raw
    assert elapsed < head * 1.5, f"closed {elapsed:.2f} s after accept"


async def test_a_connection_that_said_nothing_closes_on_eof_and_on_shutdown(tmp_path: Path):
    """Fails if the door keeps a connection whose peer half-closed before saying anything, or
    if a node stopping while the door holds a connection leaves it open (uvicorn asks each
    connection to shut down; the head deadline here is far off)."""
    settings = settings_for(tmp_path, http_header_timeout_seconds=30.0)
    async with running(settings) as node:
        half_closed = await RawConnection.open(node.settings.port)
        half_closed.sock.shutdown(socket.SHUT_WR)
        assert await half_closed.until_closed(5.0) == b""
        half_closed.close()
        silent = await RawConnection.open(node.settings.port)

        async def held() -> int:
            return node.connections

        await eventually(held, lambda n: n == 1, what="the door holds the connection")
        stopping = time.monotonic()
    assert await silent.until_closed(5.0) == b""
    assert time.monotonic() - stopping < 5.0
    silent.close()
