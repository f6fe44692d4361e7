"""The benchmark's raw WebSocket client keeps RFC 6455: against `websockets` (a server that
enforces it) and against byte streams made by hand for what a good server never sends."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

import pytest
from websockets.asyncio.server import ServerConnection, serve

from loadtest.wsclient import (
    INVALID_DATA,
    PROTOCOL_ERROR,
    ProtocolError,
    WebSocketClient,
    accept_value,
    close_all,
    connect,
    mask,
)


class Recorder(WebSocketClient):
    """Keeps every message, and wakes a waiter per message."""

    __slots__ = ("arrived", "messages")

    def __init__(self, port: int, path: str = "/") -> None:
        super().__init__("127.0.0.1", port, path)
        self.messages: list[bytes] = []
        self.arrived = asyncio.Event()

    def on_message(self, payload: bytes, arrived_ns: int) -> None:
        assert arrived_ns > 0
        self.messages.append(payload)
        self.arrived.set()

    async def next(self) -> bytes:
        async with asyncio.timeout(5):
            while not self.messages:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages.pop(0)


async def open_client(port: int) -> Recorder:
    client = Recorder(port)
    async with asyncio.timeout(5):
        await connect(client)
    return client


def test_mask_is_its_own_inverse_and_the_accept_value_is_the_rfc_example():
    payload = os.urandom(1001)
    key = os.urandom(4)
    assert mask(key, mask(key, payload)) == payload and mask(key, b"") == b""
    assert accept_value(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # §1.3


async def test_masked_messages_both_ways_fragments_ping_and_a_clean_close():
    """websockets fails the connection on an unmasked client frame, so the echo proves masking;
    a fragmented message arrives whole; a ping gets its pong; close is a full handshake."""
    closed: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            if message == "fragments":
                await ws.send(["frag", "ment", "ed ✓"])
            elif message == "ping":
                await asyncio.wait_for(await ws.ping(b"are you there"), 5)
                await ws.send("pong seen")
            else:
                await ws.send(message)
        closed.set_result(ws.close_code)

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = await open_client(port)
        big = "x" * 70_000  # a 64-bit length, both ways
        for text in ("hello", "é" * 100, big):
            client.send(text.encode())
            assert await client.next() == text.encode()
        client.send(b"fragments")
        assert await client.next() == "fragmented ✓".encode()
        client.send(b"ping")
        assert await client.next() == b"pong seen"
        await close_all([client], 5)
        assert client.lost.done() and client.failure is None
        assert await asyncio.wait_for(closed, 5) == 1000


async def test_a_server_close_is_echoed():
    async def handler(ws: ServerConnection) -> None:
        await ws.close(4001, "bad token")

    async with serve(handler, "127.0.0.1", 0) as server:
        client = await open_client(server.sockets[0].getsockname()[1])
        await asyncio.wait_for(client.lost, 5)  # websockets closes TCP once the echo arrived
        assert client.failure is None


async def raw_server(response: bytes) -> tuple[asyncio.Server, int]:
    """A server that answers the handshake, then sends `response` bytes after the 101."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + response
        )
        await reader.read()  # until the client goes
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        (b"\x81\x82abcd\x00\x00", PROTOCOL_ERROR),  # a masked server frame
        (b"\x80\x01x", PROTOCOL_ERROR),  # a continuation with nothing to continue
        (b"\x01\x01a\x81\x01b", PROTOCOL_ERROR),  # a new message inside a fragmented one
        (b"\x89\x7e\x00\x7e" + b"p" * 126, PROTOCOL_ERROR),  # a control frame over 125 bytes
        (b"\xc1\x01x", PROTOCOL_ERROR),  # RSV1 without an extension
        (b"\x83\x00", PROTOCOL_ERROR),  # a reserved opcode
        (b"\x81\x02\xc3\x28", INVALID_DATA),  # text that is not UTF-8
    ],
)
async def test_a_server_breaking_the_protocol_fails_the_connection(frames, code):
    server, port = await raw_server(frames)
    async with server:
        client = Recorder(port)
        await connect(client)
        await asyncio.wait_for(client.lost, 5)
        assert isinstance(client.failure, ProtocolError) and client.failure.code == code


async def test_a_wrong_accept_fails_the_handshake():
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        )
        await reader.read()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        client = Recorder(server.sockets[0].getsockname()[1])
        with pytest.raises(ProtocolError, match="Sec-WebSocket-Accept"):
            await asyncio.wait_for(connect(client), 5)


async def test_frames_cut_anywhere_are_reassembled():
    """Every split point of a stream holding short, 16-bit and 64-bit lengths, a ping between
    fragments and two frames in one read gives the same messages."""
    server, port = await raw_server(b"")
    async with server:
        client = Recorder(port)
        await connect(client)
        assert client.transport is not None
        written: list[bytes] = []
        client.transport.write = written.append  # type: ignore[method-assign]
        medium, large = b"m" * 300, b"L" * 70_000
        stream = (
            b"\x81\x05hello"
            + b"\x81\x7e\x01\x2c" + medium
            + b"\x82\x7f" + len(large).to_bytes(8, "big") + large
            + b"\x01\x03abc\x89\x02hi\x80\x03def"
            + b"\x81\x01a\x81\x01b"
        )  # fmt: skip
        expected = [b"hello", medium, large, b"abcdef", b"a", b"b"]
        for cut in [*range(1, 12), 310, 320, 70_320, len(stream) - 1]:
            client.messages.clear()
            client.data_received(stream[:cut])
            client.data_received(stream[cut:])
            assert client.messages == expected, cut
            assert client.failure is None
        client.messages.clear()
        for i in range(len(stream[:400])):  # byte by byte through the first frames
            client.data_received(stream[i : i + 1])
        assert client.messages == [b"hello", medium]
        pong = [w for w in written if w[0] == 0x8A]
        assert pong and pong[0][1] == 0x82  # a masked pong of 2 bytes
        assert mask(pong[0][2:6], pong[0][6:]) == b"hi"
        client.abort()
