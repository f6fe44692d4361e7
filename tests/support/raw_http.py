"""Raw HTTP/1.1 over loopback sockets, for what no HTTP client sends: heads that never end,
bytes trickled one at a time, bodies cut short. Every read is bounded.

Plain non-blocking sockets rather than asyncio streams: a stream reader that sees a reset
raises it before handing over the bytes that arrived first, and an answer followed by a reset
is exactly what some of these tests look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

import orjson

TIMEOUT = 5.0


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def parse(raw: bytes) -> RawResponse | None:
    """The first response in `raw` (None if there is none), its body cut at Content-Length."""
    head, found, rest = raw.partition(b"\r\n\r\n")
    if not found:
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(rest)))
    return RawResponse(int(status_line.split()[1]), headers, rest[:length])


class RawConnection:
    """One TCP connection to a node; bytes go out exactly as given."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._loop = asyncio.get_running_loop()
        self._pending = b""  # received after the last whole response

    @classmethod
    async def open(cls, port: int, data: bytes = b"") -> RawConnection:
        sock = socket.socket()
        sock.setblocking(False)
        connection = cls(sock)
        async with asyncio.timeout(TIMEOUT):
            await connection._loop.sock_connect(sock, ("127.0.0.1", port))
            if data:
                await connection.send(data)
        return connection

    async def send(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.sock, data)

    async def until_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Everything the server sends until it closes the connection (a reset counts); fails
        (TimeoutError) if it keeps it open longer than `timeout`."""
        chunks = [self._pending]
        self._pending = b""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    chunk = await self._loop.sock_recv(self.sock, 65536)
                except ConnectionError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)

    async def response(self, timeout: float = TIMEOUT) -> RawResponse:
        """One whole response (it has a Content-Length) on a connection that stays open."""
        buffer = self._pending
        async with asyncio.timeout(timeout):
            while True:
                parsed = parse(buffer)
                if parsed is not None:
                    end = buffer.index(b"\r\n\r\n") + 4 + int(parsed.headers["content-length"])
                    if len(buffer) >= end:
                        self._pending = buffer[end:]
                        return parsed
                chunk = await self._loop.sock_recv(self.sock, 65536)
                assert chunk, f"closed after {buffer!r}"
                buffer += chunk

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with a TCP reset rather than a FIN."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def open_fds(pid: int) -> int:
    """File descriptors the process `pid` holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))
