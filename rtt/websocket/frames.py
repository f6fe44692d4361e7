"""WebSocket frames (RFC 6455 §5), sans I/O: the server's frames out, the client's frames in.

Server frames are never masked, so a pushed frame is a 2-10 byte header plus the payload, built
once per recipient and written as is. Client frames must be masked; `parse` reads one from a
buffer, unmasks it (C `apply_mask` from python-websockets when built) and checks the rules a
server enforces, raising `ProtocolError` with the close code to fail the connection with.
"""

from __future__ import annotations

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

from rtt.errors import CloseCode

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

_OPCODES = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})  # control ones are >= 8
# close codes a peer may send (RFC 6455 §7.4, IANA registry); 1004-1006 and 1015 are reserved
_PEER_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)})


class ProtocolError(Exception):
    """The client broke RFC 6455; `code` is the close code to fail the connection with."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame around a UTF-8 payload (the fan-out's hot path)."""
    n = len(payload)
    if n < 126:
        return b"\x81%c%b" % (n, payload)
    if n < 65536:
        return b"\x81\x7e%b%b" % (n.to_bytes(2, "big"), payload)
    return b"\x81\x7f%b%b" % (n.to_bytes(8, "big"), payload)


def _control(first: bytes, payload: bytes) -> bytes:
    """A control frame: never fragmented, at most 125 payload bytes (RFC 6455 §5.5)."""
    return b"%b%c%b" % (first, len(payload), payload)


def pong_frame(payload: bytes) -> bytes:
    """The answer to a ping: the same application data (RFC 6455 §5.5.3)."""
    return _control(b"\x8a", payload)


def close_frame(code: int | None, reason: str = "") -> bytes:
    """A close frame; no code means an empty body. The reason is cut to fit 125 bytes."""
    if code is None:
        return _control(b"\x88", b"")
    body = reason.encode()[:123].decode(errors="ignore").encode()  # never split a character
    return _control(b"\x88", code.to_bytes(2, "big") + body)


def parse(
    buffer: bytes | bytearray, start: int, max_size: int
) -> tuple[int, bool, bytes, int] | None:
    """The frame at `start`: (opcode, fin, unmasked payload, where the next frame starts), or
    None while it is incomplete. Every rule is checked as soon as the bytes that break it are
    in, so a bad frame fails at its header: a data frame declared longer than `max_size` (1009)
    is never buffered, nor is a length RFC 6455 §5.2 forbids (1002)."""
    available = len(buffer) - start
    if available < 2:
        return None
    first, second = buffer[start], buffer[start + 1]
    opcode = first & 0x0F
    fin = bool(first & 0x80)
    if first & 0x70:
        raise ProtocolError(
            CloseCode.PROTOCOL_VIOLATION, "reserved bits set: no extension was negotiated"
        )
    if not second & 0x80:
        raise ProtocolError(CloseCode.PROTOCOL_VIOLATION, "client frames must be masked")
    if opcode not in _OPCODES:
        raise ProtocolError(CloseCode.PROTOCOL_VIOLATION, f"unknown opcode {opcode}")
    length = second & 0x7F
    control = opcode >= CLOSE
    if control and (length > 125 or not fin):
        raise ProtocolError(
            CloseCode.PROTOCOL_VIOLATION, "control frames must be whole and at most 125 bytes"
        )
    header = 6  # with the 4-byte mask
    if length == 126:
        header = 8
        if available < 4:
            return None
        length = int.from_bytes(buffer[start + 2 : start + 4], "big")
        if length < 126:
            raise ProtocolError(CloseCode.PROTOCOL_VIOLATION, "length not minimally encoded")
    elif length == 127:
        header = 14
        if available < 10:
            return None
        length = int.from_bytes(buffer[start + 2 : start + 10], "big")
        if length >> 63:
            raise ProtocolError(
                CloseCode.PROTOCOL_VIOLATION, "64-bit length with its most significant bit set"
            )
        if length < 65536:
            raise ProtocolError(CloseCode.PROTOCOL_VIOLATION, "length not minimally encoded")
    if length > max_size and not control:
        raise ProtocolError(CloseCode.TOO_BIG, "frame too large")
    end = start + header + length
    if len(buffer) < end:
        return None
    mask = bytes(buffer[start + header - 4 : start + header])
    return opcode, fin, apply_mask(buffer[start + header : end], mask), end


def close_reply(payload: bytes) -> bytes:
    """The close frame that answers a client's close frame (its code echoed), after checking
    the body RFC 6455 §5.5.1 allows: empty, or a valid code and a UTF-8 reason."""
    if not payload:
        return close_frame(None)
    code = int.from_bytes(payload[:2], "big")
    if len(payload) == 1 or code not in _PEER_CLOSE_CODES:
        raise ProtocolError(CloseCode.PROTOCOL_VIOLATION, "invalid close code")
    try:
        payload[2:].decode()
    except UnicodeDecodeError as e:
        raise ProtocolError(CloseCode.INVALID_DATA, "close reason is not UTF-8") from e
    return close_frame(code)
