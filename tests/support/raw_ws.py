"""A WebSocket client written by hand, so tests can break RFC 6455 on purpose, refuse to read,
or flood, against any node on a loopback port (in-process or a subprocess)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson

from tests.support.clients import TIMEOUT, token

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
CONNECT = b'{"service":"rtt","operation":"CONNECT","data":{}}'


def masked_frame(
    payload: bytes,
    opcode: int = TEXT,
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    form: int | None = None,
) -> bytes:
    """A client frame, masked unless told otherwise. Its length is minimally encoded unless
    `form` (7, 16 or 64 bits) forces one, even where RFC 6455 forbids it."""
    n = len(payload)
    first = bytes([(0x80 if fin else 0) | rsv | opcode])
    masked = 0x80 if mask else 0
    form = form or (7 if n < 126 else 16 if n < 65536 else 64)
    if form == 7:
        length = bytes([n | masked])
    elif form == 16:
        length = bytes([126 | masked]) + n.to_bytes(2, "big")
    else:
        length = bytes([127 | masked]) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        payload = apply_mask(payload, key)
        length += key
    return first + length + payload


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The unmasked frames a server wrote, from the bytes after its 101 response."""
    out, start = [], 0
    while start < len(data):
        assert start + 2 <= len(data), "a frame cut short"
        first, second = data[start], data[start + 1]
        assert not second & 0x80, "a server frame must not be masked"
        n, header = second & 0x7F, 2
        if n == 126:
            n, header = int.from_bytes(data[start + 2 : start + 4], "big"), 4
        elif n == 127:
            n, header = int.from_bytes(data[start + 2 : start + 10], "big"), 10
        assert start + header + n <= len(data), "a frame cut short"
        out.append((first & 0x0F, data[start + header : start + header + n]))
        start += header + n
    return out


class Raw:
    """One hand-driven connection: frames go out as written, nothing is read unless asked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def send(
        self, opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
    ) -> None:
        self.writer.write(masked_frame(payload, opcode, fin=fin, mask=mask, rsv=rsv))

    def request(self, request_id: int, **fields: object) -> bytes:
        body = {"service": "messaging", "operation": "GET_MESSAGE_BOXES", "data": {}, **fields}
        return orjson.dumps({**body, "requestId": request_id})

    async def recv(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """The next frame from the server: (opcode, payload). Server frames are never masked."""
        async with asyncio.timeout(timeout):
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

    async def closed_with(self, timeout: float = TIMEOUT) -> int:
        """Read up to the server's close frame; return its code, and expect the TCP close."""
        while True:
            opcode, payload = await self.recv(timeout)
            if opcode == CLOSE:
                break
        async with asyncio.timeout(timeout):
            assert await self.reader.read() == b"", "the server must close the TCP connection"
        return int.from_bytes(payload[:2], "big")

    def close(self) -> None:
        self.writer.transport.abort()


async def http_request(
    port: int, request: bytes, *, rcvbuf: int | None = None
) -> tuple[Raw, bytes]:
    """Send an HTTP request head; return the connection and the response head. `rcvbuf` sets a
    small receive buffer (the kernel's and the stream reader's), so that a client that reads
    slowly, or not at all, is felt by the server at once."""
    sock = socket.socket()
    sock.setblocking(False)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), TIMEOUT
        )
    except BaseException:
        sock.close()
        raise
    # asyncio's reader reads ahead up to twice its limit: keep that small too
    reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf or 2**16)
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


async def open_raw(
    port: int, profile: str = "p1", *, connect: bool = True, rcvbuf: int | None = None
) -> Raw:
    """An upgraded raw socket for `profile`, after a successful CONNECT unless `connect` is
    False (then it is an unauthenticated socket: the token is never sent)."""
    target = f"/rtt?token={token(profile)}" if connect else "/rtt"
    raw, head = await http_request(port, upgrade_request(target), rcvbuf=rcvbuf)
    assert head.startswith(b"HTTP/1.1 101 "), head
    if connect:
        raw.send(TEXT, CONNECT)
        assert (await raw.recv_json())["operation"] == "CONNECT"
    return raw


async def open_raw_in_pieces(port: int, profile: str) -> Raw:
    """`open_raw`, but the upgrade request arrives in two reads: the path through uvicorn's
    HTTP protocol (a request in one read skips it: rtt/front_door.py)."""
    request = upgrade_request(f"/rtt?token={token(profile)}")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request[:20])
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.write(request[20:])
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101 "), head
    raw = Raw(reader, writer)
    raw.send(TEXT, CONNECT)
    assert (await raw.recv_json())["operation"] == "CONNECT"
    return raw


@asynccontextmanager
async def raw_socket(
    port: int, profile: str = "p1", *, connect: bool = True, rcvbuf: int | None = None
) -> AsyncIterator[Raw]:
    raw = await open_raw(port, profile, connect=connect, rcvbuf=rcvbuf)
    try:
        yield raw
    finally:
        raw.writer.close()
