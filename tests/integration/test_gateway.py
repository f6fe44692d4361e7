"""The /rtt gateway's own WebSocket edges (RFC 6455), over raw TCP sockets to a real node."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.support.clients import TIMEOUT, open_socket, token
from tests.support.raw_ws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    http_request,
    masked_frame,
    raw_socket,
    upgrade_request,
)
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for

HARD_CAP = 262144 + 64 * 1024  # the largest app limit (demo's default) plus the gateway's headroom


# --- the opening handshake -------------------------------------------------------------------


async def test_handshake_answers_101_with_accept_key(server):
    """Fails if the 101 lacks the RFC 6455 Sec-WebSocket-Accept for the request's key."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC's own example
    raw, head = await http_request(server.settings.port, upgrade_request(key=key))
    raw.writer.close()
    assert head.startswith(b"HTTP/1.1 101 "), head
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
    assert {k.lower(): v for k, v in headers.items()}[b"sec-websocket-accept"] == (
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
    ), head


async def test_permessage_deflate_is_not_negotiated(server):
    """Fails if the server accepts an offered extension (it must never compress)."""
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    raw, head = await http_request(server.settings.port, upgrade_request(extra=offer))
    raw.writer.close()
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"sec-websocket-extensions" not in head.lower(), head


async def test_default_websockets_client_talks_uncompressed(server):
    """Fails if a stock client (which offers permessage-deflate) cannot use the socket."""
    async with websockets.connect(f"{server.ws_url}?token={token('p1')}") as ws:
        assert ws.protocol.extensions == []
        await ws.send('{"service":"rtt","operation":"CONNECT","data":{}}')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["operation"] == "CONNECT"


@pytest.mark.parametrize("target", ["/rtt/", "/other", "/s2sdispatcher"])  # "/": issue 10
async def test_upgrade_on_another_path_is_404(server, target):
    """Fails if a WebSocket upgrade outside /rtt is anything but an HTTP 404."""
    raw, head = await http_request(server.settings.port, upgrade_request(target))
    assert head.startswith(b"HTTP/1.1 404 "), head
    async with asyncio.timeout(TIMEOUT):
        await raw.reader.read()  # then the server closes


@pytest.mark.parametrize(
    ("request_head", "status"),
    [
        (upgrade_request(key=""), b"400"),
        (upgrade_request(key="c2hvcnQ="), b"400"),
        (upgrade_request(version="8"), b"426"),
        (upgrade_request(version=None), b"426"),
    ],
    ids=["no-key", "short-key", "version-8", "no-version"],
)
async def test_malformed_upgrade_is_refused(server, request_head, status):
    """Fails if a handshake without a valid key or version 13 is upgraded."""
    raw, head = await http_request(server.settings.port, request_head)
    assert head.startswith(b"HTTP/1.1 " + status + b" "), head
    if status == b"426":
        assert b"\r\nsec-websocket-version: 13\r\n" in head.lower(), head
    async with asyncio.timeout(TIMEOUT):
        await raw.reader.read()


# --- frames ----------------------------------------------------------------------------------


async def test_ping_is_answered_with_its_payload(server):
    """Fails if a ping gets no pong, or a pong with other application data."""
    async with raw_socket(server.settings.port) as raw:
        raw.send(PING, b"are you there")
        assert await raw.recv() == (PONG, b"are you there")
        raw.send(PONG, b"unsolicited")  # ignored
        raw.send(TEXT, raw.request(1))
        assert (await raw.recv_json())["requestId"] == 1


async def test_fragmented_message_is_assembled(server):
    """Fails if a text message split into continuation frames (a ping in between) is not
    answered as one request."""
    async with raw_socket(server.settings.port) as raw:
        body = raw.request(7, data={"pad": "é" * 100})
        raw.send(TEXT, body[:10], fin=False)
        raw.send(CONTINUATION, body[10:51], fin=False)  # splits a 2-byte character
        raw.send(PING, b"mid-message")
        raw.send(CONTINUATION, body[51:])
        assert await raw.recv() == (PONG, b"mid-message")
        reply = await raw.recv_json()
        assert reply["requestId"] == 7 and reply["status"] == 200, reply


async def test_unmasked_client_frame_closes_1002(server):
    """Fails if the server accepts a client frame without a mask."""
    async with raw_socket(server.settings.port) as raw:
        raw.send(TEXT, raw.request(1), mask=False)
        assert await raw.closed_with() == 1002


@pytest.mark.parametrize(
    "frames",
    [
        [(CONTINUATION, b"{}", True, 0)],
        [(TEXT, b"{", False, 0), (TEXT, b"}", True, 0)],
        [(TEXT, b"{}", True, 0x40)],
        [(PING, b"x", False, 0)],
        [(0x3, b"", True, 0)],
    ],
    ids=["continuation-of-nothing", "unfinished-message", "rsv1", "fragmented-ping", "opcode-3"],
)
async def test_broken_framing_closes_1002(server, frames):
    """Fails if a framing error is tolerated instead of closing with 1002."""
    async with raw_socket(server.settings.port) as raw:
        for opcode, payload, fin, rsv in frames:
            raw.send(opcode, payload, fin=fin, rsv=rsv)
        assert await raw.closed_with() == 1002


@pytest.mark.parametrize("connect", [True, False], ids=["live", "before-connect"])
async def test_invalid_utf8_closes_1007(server, connect):
    """Fails if a text frame that is not UTF-8 is served or answered instead of closing 1007."""
    async with raw_socket(server.settings.port, connect=connect) as raw:
        raw.send(TEXT, b'{"service":"\xff\xfe"}')
        assert await raw.closed_with() == 1007


async def test_frame_over_the_hard_cap_closes_1009(server):
    """Fails if a frame declared larger than any app allows is read instead of closing 1009."""
    async with raw_socket(server.settings.port) as raw:
        header = bytes([0x81, 0x80 | 127]) + (HARD_CAP + 1).to_bytes(8, "big") + os.urandom(4)
        raw.writer.write(header)  # the payload never comes: the header alone is enough
        assert await raw.closed_with() == 1009


@pytest.mark.parametrize(
    "length",
    [
        bytes([0x80 | 127]) + (1 << 63).to_bytes(8, "big"),
        bytes([0x80 | 127]) + ((1 << 63) | 10).to_bytes(8, "big"),
        bytes([0x80 | 126]) + (5).to_bytes(2, "big"),
        bytes([0x80 | 127]) + (300).to_bytes(8, "big"),
    ],
    ids=["64-bit-msb", "64-bit-msb-small", "16-bit-for-5", "64-bit-for-300"],
)
async def test_forbidden_length_encoding_closes_1002(server, length):
    """Pins: a 64-bit length with its top bit set closed 1009 instead of 1002, and lengths
    not minimally encoded (RFC 6455 §5.2) were accepted. The header alone is enough."""
    async with raw_socket(server.settings.port) as raw:
        raw.writer.write(bytes([0x80 | TEXT]) + length + os.urandom(4))
        assert await raw.closed_with() == 1002


async def test_fragments_over_the_hard_cap_close_1009(server):
    """Fails if a message assembled from fragments may grow past the hard cap, or if the
    fragment that would cross it is read before failing (its header alone is enough)."""
    async with raw_socket(server.settings.port) as raw:
        part = b"x" * (HARD_CAP // 3 + 1)
        raw.send(TEXT, b'{"pad":"' + part, fin=False)
        raw.send(CONTINUATION, part, fin=False)
        header = bytes([0x80 | CONTINUATION, 0x80 | 127]) + (len(part) + 2).to_bytes(8, "big")
        raw.writer.write(header + os.urandom(4))  # the payload never comes
        assert await raw.closed_with() == 1009


async def test_message_over_the_app_limit_but_under_the_cap_is_40600(server):
    """Fails if a message between the app's limit and the hard cap closes the socket instead
    of answering TOO_LARGE (40600)."""
    async with raw_socket(server.settings.port) as raw:
        raw.send(TEXT, raw.request(3, data={"pad": "x" * 262144}))
        reply = await raw.recv_json()
        assert reply["reason_code"] == 40600 and reply["requestId"] is None, reply
        raw.send(TEXT, raw.request(4))
        assert (await raw.recv_json())["requestId"] == 4


async def test_client_close_is_echoed_then_tcp_closed(server):
    """Fails if the server does not answer a close frame with the same code and close TCP."""
    async with raw_socket(server.settings.port) as raw:
        raw.send(CLOSE, (3001).to_bytes(2, "big") + b"bye")
        assert await raw.closed_with() == 3001


async def test_binary_before_connect_is_refused(server):
    """Fails if a binary frame opens a session (CONNECT is JSON text)."""
    async with raw_socket(server.settings.port, connect=False) as raw:
        raw.send(BINARY, b'{"service":"rtt","operation":"CONNECT","data":{}}')
        disconnect = await raw.recv_json()
        assert disconnect["operation"] == "DISCONNECT", disconnect
        assert await raw.closed_with() == 4000


@pytest.mark.parametrize("backlog", [64, 2], ids=["default", "RTT_SOCKET_BACKLOG=2"])
async def test_long_pipeline_is_answered_in_order(tmp_path: Path, backlog: int):
    """Fails if a pipeline longer than the backlog (reading pauses, then resumes) loses a
    request or answers out of order, at the default RTT_SOCKET_BACKLOG and at a tiny one."""
    settings = settings_for(tmp_path, socket_backlog=backlog)
    async with running(settings) as server, raw_socket(server.settings.port) as raw:
        count = 200
        raw.writer.write(b"".join(masked_frame(raw.request(i)) for i in range(count)))
        replies = [await raw.recv_json() for _ in range(count)]
        assert [r["requestId"] for r in replies] == list(range(count))
        assert {r["status"] for r in replies} == {200, 429}  # 20/s: most are rate limited
        raw.send(PING, b"still reading")
        assert await raw.recv() == (PONG, b"still reading")


# --- what an idle socket costs, and shutdown -------------------------------------------------


async def test_idle_sockets_hold_no_task(server):
    """Fails if a connected, idle socket keeps a task (or more) alive on the server."""
    before = len(asyncio.all_tasks())
    port = server.settings.port
    async with raw_socket(port) as a, raw_socket(port) as b, raw_socket(port) as c:
        for raw in (a, b, c):  # a request in flight needs a task; done, it must be gone
            raw.send(TEXT, raw.request(1))
            await raw.recv_json()
        await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) == before


async def test_graceful_shutdown_closes_sockets_with_1012(tmp_path: Path):
    """Fails if stopping the server leaves sockets open, or closes them without 1012."""
    server = await RunningServer(settings_for(tmp_path)).start()
    try:
        first = await open_socket(server, "p1")
        second = await open_socket(server, "p2")
    finally:
        await server.stop()  # bounded: raises if the server does not stop
    for ws in (first.ws, second.ws):
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await ws.recv()
        assert ws.close_code == 1012, ws.close_code
