"""The /rtt gateway's own WebSocket edges (RFC 6455), over raw TCP sockets to a real node."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.support.clients import TIMEOUT, open_socket, token
from tests.support.server import RunningServer
from tests.support.server import test_settings as settings_for

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
HARD_CAP = 262144 + 64 * 1024  # the largest app limit (demo's default) plus the gateway's headroom


def masked_frame(
    payload: bytes, opcode: int = TEXT, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """A client frame, masked unless told otherwise."""
    n = len(payload)
    first = bytes([(0x80 if fin else 0) | rsv | opcode])
    if n < 126:
        length = bytes([n | (0x80 if mask else 0)])
    elif n < 65536:
        length = bytes([126 | (0x80 if mask else 0)]) + n.to_bytes(2, "big")
    else:
        length = bytes([127 | (0x80 if mask else 0)]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        length += key
    return first + length + payload


class Raw:
    """A WebSocket client written by hand, so it can break the protocol on purpose."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(
        self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
    ) -> None:
        self.writer.write(masked_frame(payload, opcode, fin=fin, mask=mask, rsv=rsv))

    def request(self, request_id: int, **fields: object) -> bytes:
        body = {"service": "messaging", "operation": "GET_MESSAGE_BOXES", "data": {}, **fields}
        return orjson.dumps({**body, "requestId": request_id})

    async def recv(self) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload). Server frames are never masked."""
        async with asyncio.timeout(TIMEOUT):
            first, second = await self.reader.readexactly(2)
            assert not second & 0x80, "a server frame must not be masked"
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
            return first & 0x0F, await self.reader.readexactly(n)

    async def recv_json(self) -> dict[str, object]:
        opcode, payload = await self.recv()
        assert opcode == TEXT, (opcode, payload)
        return dict(orjson.loads(payload))

    async def closed_with(self) -> int:
        """Read up to the server's close frame; return its code, and expect the TCP close."""
        while True:
            opcode, payload = await self.recv()
            if opcode == CLOSE:
                break
        async with asyncio.timeout(TIMEOUT):
            assert await self.reader.read() == b"", "the server must close the TCP connection"
        return int.from_bytes(payload[:2], "big")


async def http_request(server: RunningServer, request: bytes) -> tuple[Raw, bytes]:
    """Send an HTTP request head; return the connection and the response head."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", server.settings.port), TIMEOUT
    )
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    return Raw(reader, writer), head


def upgrade_request(
    target: str = "/rtt", *, version: str | None = "13", key: str | None = None, extra: str = ""
) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: localhost", "Upgrade: websocket"]
    lines.append("Connection: Upgrade")
    if key != "":
        lines.append(f"Sec-WebSocket-Key: {key or base64.b64encode(os.urandom(16)).decode()}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode()


@asynccontextmanager
async def raw_socket(server: RunningServer, *, connect: bool = True) -> AsyncIterator[Raw]:
    """An upgraded raw socket, after a successful CONNECT unless `connect` is False."""
    raw, head = await http_request(server, upgrade_request(f"/rtt?token={token('p1')}"))
    assert head.startswith(b"HTTP/1.1 101 "), head
    try:
        if connect:
            raw.send(TEXT, b'{"service":"rtt","operation":"CONNECT","data":{}}')
            assert (await raw.recv_json())["operation"] == "CONNECT"
        yield raw
    finally:
        raw.writer.close()


# --- the opening handshake -------------------------------------------------------------------


async def test_handshake_answers_101_with_accept_key(server):
    """Fails if the 101 lacks the RFC 6455 Sec-WebSocket-Accept for the request's key."""
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # the RFC's own example
    raw, head = await http_request(server, upgrade_request(key=key))
    raw.writer.close()
    assert head.startswith(b"HTTP/1.1 101 "), head
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:-2])
    assert {k.lower(): v for k, v in headers.items()}[b"sec-websocket-accept"] == (
        b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
    ), head


async def test_permessage_deflate_is_not_negotiated(server):
    """Fails if the server accepts an offered extension (it must never compress)."""
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    raw, head = await http_request(server, upgrade_request(extra=offer))
    raw.writer.close()
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"sec-websocket-extensions" not in head.lower(), head


async def test_default_websockets_client_talks_uncompressed(server):
    """Fails if a stock client (which offers permessage-deflate) cannot use the socket."""
    async with websockets.connect(f"{server.ws_url}?token={token('p1')}") as ws:
        assert ws.protocol.extensions == []
        await ws.send('{"service":"rtt","operation":"CONNECT","data":{}}')
        assert orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))["operation"] == "CONNECT"


@pytest.mark.parametrize("target", ["/", "/rtt/", "/other", "/s2sdispatcher"])
async def test_upgrade_on_another_path_is_404(server, target):
    """Fails if a WebSocket upgrade outside /rtt is anything but an HTTP 404."""
    raw, head = await http_request(server, upgrade_request(target))
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
    raw, head = await http_request(server, request_head)
    assert head.startswith(b"HTTP/1.1 " + status + b" "), head
    if status == b"426":
        assert b"\r\nsec-websocket-version: 13\r\n" in head.lower(), head
    async with asyncio.timeout(TIMEOUT):
        await raw.reader.read()


# --- frames ----------------------------------------------------------------------------------


async def test_ping_is_answered_with_its_payload(server):
    """Fails if a ping gets no pong, or a pong with other application data."""
    async with raw_socket(server) as raw:
        raw.send(PING, b"are you there")
        assert await raw.recv() == (PONG, b"are you there")
        raw.send(PONG, b"unsolicited")  # ignored
        raw.send(TEXT, raw.request(1))
        assert (await raw.recv_json())["requestId"] == 1


async def test_fragmented_message_is_assembled(server):
    """Fails if a text message split into continuation frames (a ping in between) is not
    answered as one request."""
    async with raw_socket(server) as raw:
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
    async with raw_socket(server) as raw:
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
    async with raw_socket(server) as raw:
        for opcode, payload, fin, rsv in frames:
            raw.send(opcode, payload, fin=fin, rsv=rsv)
        assert await raw.closed_with() == 1002


@pytest.mark.parametrize("connect", [True, False], ids=["live", "before-connect"])
async def test_invalid_utf8_closes_1007(server, connect):
    """Fails if a text frame that is not UTF-8 is served or answered instead of closing 1007."""
    async with raw_socket(server, connect=connect) as raw:
        raw.send(TEXT, b'{"service":"\xff\xfe"}')
        assert await raw.closed_with() == 1007


async def test_frame_over_the_hard_cap_closes_1009(server):
    """Fails if a frame declared larger than any app allows is read instead of closing 1009."""
    async with raw_socket(server) as raw:
        header = bytes([0x81, 0x80 | 127]) + (HARD_CAP + 1).to_bytes(8, "big") + os.urandom(4)
        raw.writer.write(header)  # the payload never comes: the header alone is enough
        assert await raw.closed_with() == 1009


async def test_fragments_over_the_hard_cap_close_1009(server):
    """Fails if a message assembled from fragments may grow past the hard cap."""
    async with raw_socket(server) as raw:
        part = b"x" * (HARD_CAP // 3 + 1)
        raw.send(TEXT, b'{"pad":"' + part, fin=False)
        raw.send(CONTINUATION, part, fin=False)
        raw.send(CONTINUATION, part + b'"}')
        assert await raw.closed_with() == 1009


async def test_message_over_the_app_limit_but_under_the_cap_is_40600(server):
    """Fails if a message between the app's limit and the hard cap closes the socket instead
    of answering TOO_LARGE (40600)."""
    async with raw_socket(server) as raw:
        raw.send(TEXT, raw.request(3, data={"pad": "x" * 262144}))
        reply = await raw.recv_json()
        assert reply["reason_code"] == 40600 and reply["requestId"] is None, reply
        raw.send(TEXT, raw.request(4))
        assert (await raw.recv_json())["requestId"] == 4


async def test_client_close_is_echoed_then_tcp_closed(server):
    """Fails if the server does not answer a close frame with the same code and close TCP."""
    async with raw_socket(server) as raw:
        raw.send(CLOSE, (3001).to_bytes(2, "big") + b"bye")
        assert await raw.closed_with() == 3001


async def test_binary_before_connect_is_refused(server):
    """Fails if a binary frame opens a session (CONNECT is JSON text)."""
    async with raw_socket(server, connect=False) as raw:
        raw.send(BINARY, b'{"service":"rtt","operation":"CONNECT","data":{}}')
        disconnect = await raw.recv_json()
        assert disconnect["operation"] == "DISCONNECT", disconnect
        assert await raw.closed_with() == 4000


async def test_long_pipeline_is_answered_in_order(server):
    """Fails if a pipeline longer than the backlog (reading pauses, then resumes) loses a
    request or answers out of order."""
    async with raw_socket(server) as raw:
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
    async with raw_socket(server) as a, raw_socket(server) as b, raw_socket(server) as c:
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
