"""The WebSocket server protocol: an asyncio protocol that uvicorn hands upgraded connections.

uvicorn parses HTTP; on an `Upgrade: websocket` request it builds `ws=WebSocketProtocol`, gives
it the transport and the request head, and switches the transport over. From there this class is
the whole socket: the opening handshake, frame parsing, pings, the closing handshake, flow
control and graceful shutdown. It hands complete messages to the `Handler` the app's `Endpoint`
opens for the connection, and is the connection that handler writes pre-framed bytes to, one
`transport.write` per frame.

It knows nothing of RTT: the app above says which path it serves, how large a message may be and
what handles a connection, through uvicorn's lifespan state. An idle socket is this object, its
transport and the handler's state: no task, stream reader, queue or event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, cast

from uvicorn.config import Config
from uvicorn.server import ServerState

from rtt.errors import CloseCode
from rtt.websocket import frames, handshake

ENDPOINT_KEY = "rtt.websocket"  # the lifespan state key the app yields its Endpoint under
CLOSE_TIMEOUT = 3.0  # how long a closing socket waits for the peer before the TCP close


class Handler(Protocol):
    """The application side of one connection."""

    def received(self, payload: bytes, text: bool) -> None:
        """One whole message (text already checked to be UTF-8)."""
        ...

    def closed(self) -> None:
        """The connection is closing or gone: nothing more will be received."""
        ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What the app tells the protocol: the path it serves, the largest message it reads (more
    closes with 1009), and what opens a handler for an upgraded connection and its query."""

    path: str
    max_message_bytes: int
    open: Callable[[WebSocketProtocol, dict[str, str]], Handler]


# _CLOSING: our close frame is sent, the peer's is awaited; _CLOSED: nothing is read or written
_HANDSHAKE, _OPEN, _CLOSING, _CLOSED = range(4)


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection, from the upgrade request to the TCP close."""

    _transport: asyncio.Transport  # uvicorn calls connection_made right after __init__

    __slots__ = (
        "_buffer",
        "_close_timer",
        "_drained",
        "_endpoint",
        "_handler",
        "_message",
        "_message_opcode",
        "_paused",
        "_server_state",
        "_state",
        "_transport",
    )

    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any]
    ) -> None:
        endpoint = app_state.get(ENDPOINT_KEY)
        if not isinstance(endpoint, Endpoint):
            raise RuntimeError("WebSocketProtocol needs an Endpoint in the lifespan state")
        self._endpoint = endpoint
        self._server_state = server_state
        self._state = _HANDSHAKE
        self._buffer: bytearray | None = None  # bytes received but not yet parsed
        self._message: bytearray | None = None  # a fragmented message being assembled
        self._message_opcode = frames.TEXT
        self._handler: Handler | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None  # exists only while someone waits

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # set before any other call
        self._server_state.connections.add(self)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self._state == _HANDSHAKE:
            self._handshake(data)
            return
        if self._state == _CLOSED:
            return
        buffer: bytes | bytearray = data
        if self._buffer is not None:
            self._buffer += data
            buffer = self._buffer
        start = 0
        try:
            while self._state != _CLOSED:
                frame = frames.parse(buffer, start, self._endpoint.max_message_bytes)
                if frame is None:
                    break
                opcode, fin, payload, start = frame
                self._frame(opcode, fin, payload)
        except frames.ProtocolError as e:
            self._fail(e.code, e.reason)
            return
        if start == len(buffer) or self._state == _CLOSED:
            self._buffer = None
        elif buffer is self._buffer:
            del self._buffer[:start]
        else:
            self._buffer = bytearray(buffer[start:])

    def eof_received(self) -> bool:
        return False  # the peer is done sending: close our side too (connection_lost follows)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        self._server_state.connections.discard(self)
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._buffer = self._message = None
        self._wake_drainer()
        self._end()

    # --- uvicorn -----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn is stopping: close with 1012 and don't wait for the peer's answer."""
        if self._state == _OPEN:
            self.close(CloseCode.SERVICE_RESTART, "server restarting")
        self._transport.close()

    # --- what the handler above uses ---------------------------------

    def write(self, frame: bytes) -> int:
        """Write one whole frame; returns the bytes the transport still holds for this peer."""
        if self._state != _OPEN:
            return 0
        transport = self._transport
        transport.write(frame)
        return transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until the transport is under its high-water mark (or the socket is gone)."""
        if self._paused and self._state != _CLOSED:
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            await self._drained

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake: no frame is written after this one. The peer has
        CLOSE_TIMEOUT to answer before the connection is cut."""
        if self._state != _OPEN:
            return
        transport = self._transport
        transport.write(frames.close_frame(code, reason))
        self._state = _CLOSING
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(CLOSE_TIMEOUT, transport.abort)
        self._end()

    def pause_reading(self) -> None:
        """Stop reading the peer (its own TCP window then slows it down)."""
        if self._state != _CLOSED:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._state != _CLOSED:
            self._transport.resume_reading()

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a coroutine for this connection as a task uvicorn waits for on shutdown."""
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._server_state.tasks.add(task)
        task.add_done_callback(self._server_state.tasks.discard)
        return task

    # --- inside ------------------------------------------------------------------------------

    def _handshake(self, data: bytes) -> None:
        request = self._buffer + data if self._buffer is not None else data
        head_end = request.find(b"\r\n\r\n")
        transport = self._transport
        if head_end < 0:
            if len(request) > handshake.MAX_REQUEST_BYTES:
                self._state = _CLOSED
                too_large = HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
                transport.write(handshake.Refused(too_large, "request head too large").response)
                transport.close()
            else:
                self._buffer = bytearray(request)
            return
        self._buffer = None
        try:
            upgrade = handshake.upgrade(bytes(request[: head_end + 4]), self._endpoint.path)
        except handshake.Refused as refused:
            self._state = _CLOSED
            transport.write(refused.response)
            transport.close()
            return
        transport.write(upgrade.response)
        self._state = _OPEN
        self._handler = self._endpoint.open(self, upgrade.query)
        rest = request[head_end + 4 :]
        if rest:
            self.data_received(bytes(rest))

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == frames.PING:
            if self._state == _OPEN:
                self._transport.write(frames.pong_frame(payload))
            return
        if opcode == frames.PONG:
            return
        if opcode == frames.CLOSE:
            self._closed_by_peer(payload)
            return
        message = self._message
        if opcode == frames.CONTINUATION:
            if message is None:
                raise frames.ProtocolError(CloseCode.PROTOCOL_VIOLATION, "continuation of nothing")
            if len(message) + len(payload) > self._endpoint.max_message_bytes:
                raise frames.ProtocolError(CloseCode.TOO_BIG, "message too large")
            message += payload
            if not fin:
                return
            self._message = None
            payload, opcode = bytes(message), self._message_opcode
        elif message is not None:
            raise frames.ProtocolError(
                CloseCode.PROTOCOL_VIOLATION, "a fragmented message is unfinished"
            )
        elif not fin:
            self._message, self._message_opcode = bytearray(payload), opcode
            return
        self._deliver(opcode, payload)

    def _deliver(self, opcode: int, payload: bytes) -> None:
        if self._state != _OPEN or self._handler is None:
            return  # closing: the peer's data no longer matters
        if opcode == frames.TEXT:
            try:
                payload.decode()
            except UnicodeDecodeError:
                raise frames.ProtocolError(CloseCode.INVALID_DATA, "text is not UTF-8") from None
        self._handler.received(payload, opcode == frames.TEXT)

    def _closed_by_peer(self, payload: bytes) -> None:
        if self._state == _OPEN:  # answer, then close the TCP connection (RFC 6455 §7.1.1)
            self._transport.write(frames.close_reply(payload))
            self._end()
        self._state = _CLOSED
        self._transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): say why if we still may, then cut it."""
        if self._state == _OPEN:
            self.close(code, reason)
        self._state = _CLOSED
        self._buffer = self._message = None
        self._transport.close()

    def _end(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.closed()

    def _wake_drainer(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)
