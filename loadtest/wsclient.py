"""A small RFC 6455 WebSocket client as an `asyncio.Protocol`, cheap enough for a load generator.

The fan-out benchmark receives ~100 000 frames/s on one core. A client library that wakes a task
and decodes a `str` per frame costs the generator more than the server it measures, so here frames
are cut from the bytes in `data_received`, with no task and no await per socket or frame, and each
whole message goes to `on_message` together with the arrival time of the batch it came in.

It speaks what the benchmark needs, by the RFC: a handshake whose `Sec-WebSocket-Accept` is
checked, no extensions or subprotocols (a server that picks one fails the handshake), every sent
frame masked with a fresh key, fragmented messages reassembled, text checked as UTF-8, pings
answered, a close echoed, and a server that breaks the protocol failed with the RFC's close code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Sequence
from time import time_ns
from typing import cast

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HANDSHAKE_BYTES = 16 * 1024
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009
FIN_TEXT = 0x80 | TEXT  # the first byte of an unfragmented text frame: the common case


class ProtocolError(Exception):
    """The server broke RFC 6455 (or sent a message larger than MAX_MESSAGE_BYTES)."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


def mask(key: bytes, payload: bytes) -> bytes:
    """XOR `payload` with the 4-byte `key` repeated (RFC 6455 §5.3), as one big-int XOR."""
    n = len(payload)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """One final frame as a client must send it: masked with a fresh unpredictable key."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    return header + key + mask(key, payload)


def accept_value(key: bytes) -> bytes:
    """The `Sec-WebSocket-Accept` a server must answer to `key` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def check_handshake(head: bytes, key: bytes) -> None:
    """Raise ProtocolError unless `head` (status line and headers) accepts the upgrade."""
    status, *lines = head.decode("latin-1").split("\r\n")
    parts = status.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or parts[1] != "101":
        raise ProtocolError(f"expected 101 Switching Protocols, got {status!r:.200}")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise ProtocolError(f"malformed header line {line!r:.200}")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise ProtocolError("the response does not upgrade to websocket")
    if "upgrade" not in (t.strip().lower() for t in headers.get("connection", "").split(",")):
        raise ProtocolError("the response's Connection header lacks Upgrade")
    if headers.get("sec-websocket-accept", "").encode() != accept_value(key):
        raise ProtocolError("wrong Sec-WebSocket-Accept")
    for name in ("sec-websocket-extensions", "sec-websocket-protocol"):
        if name in headers:
            raise ProtocolError(f"the server chose {name} {headers[name]!r}, none was offered")


class WebSocketClient(asyncio.Protocol):
    """One client connection: `loop.create_connection(lambda: client, host, port)`.

    Subclasses override `on_open` (the handshake is done), `on_message` (a whole text or binary
    message and the `time.time_ns()` at which the bytes completing it arrived) and resolve
    `ready` when the connection is usable for them; the default `on_open` resolves it at once.
    `ready` fails if the handshake fails or the connection ends first; `failure` is set when
    the server broke the protocol; `close_code` is the code of the server's close frame, if one
    came; `lost` resolves when the TCP connection is gone.
    """

    __slots__ = (
        "_buffer",
        "_close_sent",
        "_fragmented_opcode",
        "_fragments",
        "_key",
        "_need",
        "_open",
        "close_code",
        "failure",
        "host",
        "lost",
        "path",
        "port",
        "ready",
        "transport",
    )

    def __init__(self, host: str, port: int, path: str) -> None:
        loop = asyncio.get_running_loop()
        self.host, self.port, self.path = host, port, path
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.failure: ProtocolError | None = None
        self.close_code: int | None = None
        self.transport: asyncio.Transport | None = None
        self._key = base64.b64encode(os.urandom(16))
        self._open = False
        self._close_sent = False
        self._buffer = bytearray()
        self._need = 0  # bytes the buffer must hold before a frame can be complete
        self._fragments: list[bytes] = []
        self._fragmented_opcode = 0

    # -- hooks --------------------------------------------------------------------------------

    def on_open(self) -> None:
        """The handshake succeeded; by default the connection is ready as it is."""
        self.ready.set_result(None)

    def on_message(self, payload: bytes, arrived_ns: int) -> None:
        """One whole message (text already checked to be UTF-8)."""

    # -- sending ------------------------------------------------------------------------------

    def send(self, payload: bytes, opcode: int = TEXT) -> None:
        """Send one message as one masked frame (a text payload must be UTF-8)."""
        if self.transport is not None and not self._close_sent:
            self.transport.write(client_frame(opcode, payload))

    def close(self, code: int = 1000) -> None:
        """Start the closing handshake; the server then closes TCP and `lost` resolves."""
        if self.transport is not None and not self._close_sent:
            self.transport.write(client_frame(CLOSE, code.to_bytes(2, "big")))
            self._close_sent = True

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.transport.write(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (self.path.encode(), self.host.encode(), self.port, self._key)
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(self.failure or ConnectionError("closed before ready"))
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        """Cut whole frames out of what arrived; keep an incomplete tail for the next call."""
        arrived = time_ns()
        buffer = self._buffer
        if buffer or not self._open:
            buffer += data
            if len(buffer) < self._need:
                return
            data = bytes(buffer)
            buffer.clear()
            if not self._open:
                data = self._handshake(data)
        n, pos, need = len(data), 0, 0
        on_message, fragments = self.on_message, self._fragments
        try:
            while pos < n:
                if n - pos < 2:
                    need = 2
                    break
                first, length = data[pos], data[pos + 1]
                if length & 0x80:
                    raise ProtocolError("the server masked a frame")
                start = pos + 2
                if length == 126:
                    if n - pos < 4:
                        need = 4
                        break
                    length, start = data[pos + 2] << 8 | data[pos + 3], pos + 4
                elif length == 127:
                    if n - pos < 10:
                        need = 10
                        break
                    length, start = int.from_bytes(data[pos + 2 : pos + 10], "big"), pos + 10
                    if length > MAX_MESSAGE_BYTES:
                        raise ProtocolError("frame too big", TOO_BIG)
                end = start + length
                if end > n:
                    need = end - pos
                    break
                payload = data[start:end]
                pos = end
                if first == FIN_TEXT and not fragments:
                    if not payload.isascii():
                        payload.decode()
                    on_message(payload, arrived)
                else:
                    self._frame(first, payload, arrived)
        except UnicodeDecodeError:
            self._fail(ProtocolError("text message is not UTF-8", INVALID_DATA))
            return
        except ProtocolError as e:
            self._fail(e)
            return
        if pos < n:
            buffer += memoryview(data)[pos:]
        self._need = need

    # -- internals ----------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> bytes:
        """Check the HTTP response once it is whole; return the bytes after it (frames)."""
        head, found, rest = data.partition(b"\r\n\r\n")
        if not found:
            if len(data) > MAX_HANDSHAKE_BYTES:
                self._fail(ProtocolError("handshake response too long"), send_close=False)
            else:
                self._buffer += data
            return b""
        try:
            check_handshake(head, self._key)
        except ProtocolError as e:
            self._fail(e, send_close=False)
            return b""
        self._open = True
        self.on_open()
        return rest

    def _frame(self, first: int, payload: bytes, arrived: int) -> None:
        """Everything but an unfragmented text frame: fragments, binary, control frames."""
        fin, opcode = first & 0x80, first & 0x0F
        if first & 0x70:
            raise ProtocolError("reserved bits set, no extension was negotiated")
        if opcode >= CLOSE:
            if not fin or len(payload) > 125:
                raise ProtocolError("control frames must be final and at most 125 bytes")
            self._control(opcode, payload)
            return
        if opcode == CONTINUATION:
            if not self._fragments:
                raise ProtocolError("continuation frame without a message to continue")
        elif opcode in (TEXT, BINARY):
            if self._fragments:
                raise ProtocolError("new message before the fragmented one ended")
            self._fragmented_opcode = opcode
        else:
            raise ProtocolError(f"reserved opcode {opcode:#x}")
        self._fragments.append(payload)
        if sum(len(f) for f in self._fragments) > MAX_MESSAGE_BYTES:
            raise ProtocolError("message too big", TOO_BIG)
        if fin:
            message = b"".join(self._fragments)
            self._fragments.clear()
            if self._fragmented_opcode == TEXT and not message.isascii():
                message.decode()
            self.on_message(message, arrived)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            self.send(payload, PONG)
        elif opcode == CLOSE:
            if len(payload) == 1:
                raise ProtocolError("close frame with a 1-byte payload")
            payload[2:].decode()  # the reason must be UTF-8
            if payload:
                self.close_code = int.from_bytes(payload[:2], "big")
            if not self._close_sent:
                self.send(payload[:2], CLOSE)  # echo the status code
                self._close_sent = True

    def _fail(self, error: ProtocolError, send_close: bool = True) -> None:
        """_Fail the WebSocket Connection_ (RFC 6455 §7.1.7): say why if we can, drop TCP."""
        self.failure = error
        if send_close:
            self.close(error.code)
        if self.transport is not None:
            self.transport.close()


async def connect(client: WebSocketClient) -> None:
    """Open `client`'s TCP connection and wait until it is ready (or raise why it is not)."""
    loop = asyncio.get_running_loop()
    await loop.create_connection(lambda: client, client.host, client.port)
    await client.ready


async def close_all(clients: Sequence[WebSocketClient], timeout: float) -> None:
    """Close every open client cleanly (the server closes TCP first), abort what is left."""
    for client in clients:
        client.close()
    pending = [c.lost for c in clients if c.transport is not None and not c.lost.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for client in clients:
        if not client.lost.done():
            client.abort()
