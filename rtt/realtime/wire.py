"""Writing pre-encoded frames straight to a WebSocket's transport.

A pushed frame is JSON encoded once per send; going through ASGI `send_text` would decode it to
`str`, hand it through three middleware layers and re-encode it for every socket. Instead, rtt
runs uvicorn with `DirectWebSocketProtocol`, which exposes its transport in the ASGI scope, and
writes each text frame with one `transport.write` (a server frame is unmasked: a 2-10 byte
header plus the payload). Handshake, reads, pings and close stay with uvicorn.
"""

from __future__ import annotations

from asyncio import Transport
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

SCOPE_KEY = "rtt.direct_write"


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame (RFC 6455 §5.2) around a UTF-8 payload."""
    n = len(payload)
    if n < 126:
        return b"\x81%c%b" % (n, payload)
    if n < 65536:
        return b"\x81\x7e%b%b" % (n.to_bytes(2, "big"), payload)
    return b"\x81\x7f%b%b" % (n.to_bytes(8, "big"), payload)


class DirectWriter:
    """What a session needs of its socket: write whole frames, know how much is buffered."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    @property
    def closed(self) -> bool:
        p = self._protocol
        return bool(p.close_sent or p.transport.is_closing())

    def write(self, frame: bytes) -> int:
        """Write one framed message; returns the bytes still waiting in the kernel's stead."""
        transport: Transport = self._protocol.transport
        transport.write(frame)
        return transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until the transport is below its high-water mark (or the socket is gone)."""
        await self._protocol.writable.wait()


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol, with a DirectWriter in the scope's extensions."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # the ASGI task was created but has not started: it will see this key
        extensions: dict[str, Any] = self.scope["extensions"]
        extensions[SCOPE_KEY] = DirectWriter(self)

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # the 101 response and its headers are sent: don't keep them for the socket's life
            self.response = None  # type: ignore[assignment]
