"""The WebSocket opening handshake (RFC 6455 §4.2), sans I/O: an upgrade request in, the
`101 Switching Protocols` response out, or the HTTP error that refuses it.

No extension (permessage-deflate included) and no subprotocol is ever negotiated: rtt frames
are small JSON objects, and a compressor per socket would cost more memory than it saves.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_REQUEST_BYTES = 16 * 1024


class Refused(Exception):
    """The request cannot be upgraded; `response` is the complete HTTP answer to send."""

    def __init__(self, status: HTTPStatus, message: str, headers: bytes = b"") -> None:
        super().__init__(message)
        body = message.encode()
        self.response = (
            b"HTTP/1.1 %d %b\r\n%bContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%b"
            % (status, status.phrase.encode(), headers, len(body), body)
        )


@dataclass(frozen=True, slots=True)
class Upgrade:
    """An accepted request: the response to send and the request's query parameters."""

    response: bytes
    query: dict[str, str]


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _tokens(value: bytes) -> set[bytes]:
    return {token.strip().lower() for token in value.split(b",")}


def upgrade(request: bytes, *paths: str) -> Upgrade:
    """Check a complete request head (through the blank line) for an upgrade to one of `paths`."""
    lines = request.split(b"\r\n")
    try:
        method, target, version = lines[0].split(b" ")
    except ValueError:
        raise Refused(HTTPStatus.BAD_REQUEST, "malformed request line") from None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            name = name.strip().lower()
            value = value.strip()
            headers[name] = headers[name] + b"," + value if name in headers else value
    raw_path, _, query = target.decode("latin-1").partition("?")
    if unquote(raw_path) not in paths:
        raise Refused(HTTPStatus.NOT_FOUND, "not found")
    if method != b"GET" or version != b"HTTP/1.1":
        raise Refused(HTTPStatus.BAD_REQUEST, "a WebSocket upgrade is a GET over HTTP/1.1")
    if b"websocket" not in _tokens(headers.get(b"upgrade", b"")) or b"upgrade" not in _tokens(
        headers.get(b"connection", b"")
    ):
        raise Refused(HTTPStatus.BAD_REQUEST, "expected Upgrade: websocket, Connection: upgrade")
    if headers.get(b"sec-websocket-version") != b"13":
        raise Refused(
            HTTPStatus.UPGRADE_REQUIRED,
            "unsupported WebSocket version",
            b"Sec-WebSocket-Version: 13\r\n",
        )
    key = headers.get(b"sec-websocket-key", b"")
    try:
        valid_key = len(base64.b64decode(key, validate=True)) == 16
    except binascii.Error:
        valid_key = False
    if not valid_key:
        raise Refused(HTTPStatus.BAD_REQUEST, "missing or invalid Sec-WebSocket-Key")
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: %b\r\n\r\n" % accept_key(key)
    )
    return Upgrade(response, dict(parse_qsl(query)))
