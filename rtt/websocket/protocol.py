"""The WebSocket server protocol: an asyncio protocol that uvicorn hands upgraded connections.

A WebSocket upgrade request reaches this protocol from the front door (rtt/front_door.py) when
it came whole in a connection's first read, else from uvicorn's HTTP protocol once it parsed
it: either builds `ws=WebSocketProtocol`, gives it the transport and the request head, and
switches the transport over. From there this class is
the whole socket: the opening handshake, frame parsing, pings, the closing handshake, flow
control and graceful shutdown. It hands complete messages to the `Handler` the app's `Endpoint`
opens for the connection, and is the connection that handler writes pre-framed bytes to.

Writes are corked, as uWebSockets does: the frames written to one connection within one turn of
the event loop leave in one `transport.write` (one `send()`), at the start of the next turn
(`loop.call_soon`, so an idle socket's lone frame waits for no timer). A fan-out that pushes
several messages to a socket in one turn then costs one syscall for them, not one each.

It knows nothing of RTT: the app above says which path it serves, how large a message may be,
what handles a connection and the connection's bounds, through uvicorn's lifespan state. An idle
socket is this object, its transport and the handler's state: no task, stream reader, queue or
event.
"""

from __future__ import annotations

import asyncio
import codecs
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol, cast

from uvicorn.config import Config
from uvicorn.server import ServerState

from rtt.errors import CloseCode
from rtt.websocket import frames, handshake

ENDPOINT_KEY = "rtt.websocket"  # the lifespan state key the app yields its Endpoint under
FAIR_SHARE_BYTES = 64 * 1024  # frames handled per connection per turn of the event loop
NO_STATUS, ABNORMAL = 1005, 1006  # RFC 6455 §7.1.5: a close frame without a code; none at all
CORK_BYTES = 64 * 1024  # a connection's cork is written at once when it holds this much


class Handler(Protocol):
    """The application side of one connection."""

    def received(self, payload: bytes, text: bool) -> None:
        """One whole message (text already checked to be UTF-8)."""
        ...

    def closed(self) -> None:
        """The connection is closing or gone: nothing more will be received."""
        ...

    def going_away(self) -> None:
        """The server is stopping: the handler may write its last frames (say why) before the
        connection closes with 1012."""
        ...


class Uncorker:
    """The connections written to in this turn of the event loop: all uncorked by one callback
    at the start of the next turn, so a fan-out schedules one callback, not one per socket."""

    __slots__ = ("_corked",)

    def __init__(self) -> None:
        self._corked: list[WebSocketProtocol] = []

    def add(self, connection: WebSocketProtocol) -> None:
        if not self._corked:
            asyncio.get_running_loop().call_soon(self._uncork_all)
        self._corked.append(connection)

    def _uncork_all(self) -> None:
        corked, self._corked = self._corked, []
        for connection in corked:
            connection.uncork()


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What the app tells the protocol: the path it serves, the largest message it reads (more
    closes with 1009), what opens a handler for an upgraded connection and its query, and the
    connection's bounds:

    - `buffer_bytes`: every byte written to a connection (frames, pongs, the close) is under
      this one budget of bytes the peer has not read yet; past it the connection closes 4003.
    - `drain_timeout`: how long `drain()` may wait for a peer that does not read before the
      connection closes 4003.
    - `close_timeout`: how long a closing connection waits for the peer's close frame before
      the TCP connection is cut.
    """

    path: str
    max_message_bytes: int
    open: Callable[[WebSocketProtocol, dict[str, str]], Handler]
    buffer_bytes: int
    drain_timeout: float
    close_timeout: float
    also_paths: tuple[str, ...] = ()  # more paths served the same way
    # the corked connections of this endpoint's server (one server, one event loop)
    uncorker: Uncorker = field(default_factory=Uncorker, compare=False, repr=False)


# _CLOSING: our close frame is sent, the peer's is awaited; _CLOSED: nothing is read or written
_HANDSHAKE, _OPEN, _CLOSING, _CLOSED = range(4)


class WebSocketProtocol(asyncio.Protocol):
    """One WebSocket connection, from the upgrade request to the TCP close.

    Flow control runs both ways. Out: the transport's unread bytes are bounded by the
    endpoint's `buffer_bytes` (more closes 4003). In: frames are parsed only while the
    transport accepts writes (a peer that does not read cannot make the node produce more,
    pongs included) and while the handler wants more; otherwise the socket is not read and
    unparsed bytes wait in `_buffer` (at most one read's worth and one unfinished frame).
    A read full of pings is answered with one pong, for the latest: a ping flood costs the
    node parsing, not a write per ping.
    """

    _transport: asyncio.Transport  # uvicorn calls connection_made right after __init__

    __slots__ = (
        "_budget",
        "_buffer",
        "_close_timer",
        "_corked",
        "_corked_bytes",
        "_decoder",
        "_drain_timer",
        "_drained",
        "_endpoint",
        "_handler",
        "_held",
        "_message",
        "_message_opcode",
        "_paused",
        "_pong",
        "_reading",
        "_server_state",
        "_state",
        "_transport",
        "_yielded",
        "close_code",
        "last_received",
    )

    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any]
    ) -> None:
        endpoint = app_state.get(ENDPOINT_KEY)
        if not isinstance(endpoint, Endpoint):
            raise RuntimeError("WebSocketProtocol needs an Endpoint in the lifespan state")
        self._endpoint = endpoint
        self._budget = endpoint.buffer_bytes
        self._server_state = server_state
        self._state = _HANDSHAKE
        self._buffer: bytearray | None = None  # bytes received but not yet parsed
        self._message: bytearray | None = None  # a fragmented message being assembled
        self._message_opcode = frames.TEXT
        self._decoder: codecs.IncrementalDecoder | None = None  # a fragmented text's UTF-8
        self._handler: Handler | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        self._paused = False  # the transport is over its high-water mark
        self._held = False  # the handler asked to stop reading
        self._yielded = False  # a big read: the other connections have their turn first
        self._reading = True  # none of the three: frames are parsed
        self._pong: bytes | None = None  # the latest ping's payload, until the read is handled
        self._corked: list[bytes] | None = None  # frames written this turn, not yet sent
        self._corked_bytes = 0
        self._drained: asyncio.Future[None] | None = None  # exists only while someone waits
        self._drain_timer: asyncio.TimerHandle | None = None
        # when the last whole frame arrived, read by the handler when its silence timer fires
        self.last_received = time.monotonic()
        # how the connection ended, for the handler's `closed`: our code, else the peer's
        self.close_code = ABNORMAL

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # set before any other call
        self._server_state.connections.add(self)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self._state == _HANDSHAKE:
            self._handshake(data)
        elif self._state == _CLOSED:
            return
        elif self._buffer is not None:
            self._buffer += data
            self._parse(self._buffer)
        else:
            self._parse(data)

    def eof_received(self) -> bool:
        return False  # the peer is done sending: close our side too (connection_lost follows)

    def pause_writing(self) -> None:
        self._paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainer()
        self._update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _CLOSED
        self._server_state.connections.discard(self)
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._buffer = self._message = self._decoder = self._corked = None
        self._wake_drainer()
        self._end()

    # --- uvicorn -----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """uvicorn is stopping (it no longer accepts connections): let the handler say why,
        close with 1012 and don't wait for the peer's answer. The bytes already written still
        go out before the TCP close; a peer that does not read them is cut after the
        endpoint's `close_timeout`."""
        if self._state == _OPEN:
            if self._handler is not None:
                self._handler.going_away()
            self.close(CloseCode.SERVICE_RESTART, "server restarting")
        self._transport.close()

    # --- what the handler above uses ---------------------------------

    def write(self, frame: bytes) -> None:
        """Write one whole frame, corked until the next turn of the loop (or until the cork holds
        CORK_BYTES), under the connection's budget: if the peer's unread bytes exceed it once
        the cork is written, the connection closes as too slow (4003)."""
        if self._state != _OPEN:
            return
        corked = self._corked
        if corked is None:
            self._corked = [frame]
            self._corked_bytes = len(frame)
            self._endpoint.uncorker.add(self)
        else:
            corked.append(frame)
            self._corked_bytes += len(frame)
            if self._corked_bytes >= CORK_BYTES:
                self.uncork()

    def uncork(self) -> None:
        """Send the corked frames in one write, then hold the peer to the budget."""
        corked, self._corked = self._corked, None
        if corked is None or self._state != _OPEN:
            return
        transport = self._transport
        transport.write(corked[0] if len(corked) == 1 else b"".join(corked))
        if transport.get_write_buffer_size() > self._budget:
            self.close(CloseCode.SLOW_CONSUMER, "too slow: unread bytes over the budget")

    async def drain(self) -> bool:
        """Wait until the transport is under its high-water mark; True if the connection is
        still open. A peer that does not read for the endpoint's `drain_timeout` meanwhile is
        closed as too slow (4003), so no caller waits longer than that. The cork is written
        first: what was written before a drain is what the drain waits for."""
        self.uncork()
        if self._paused and self._state == _OPEN:
            drained = self._drained
            if drained is None:
                loop = asyncio.get_running_loop()
                drained = self._drained = loop.create_future()
                self._drain_timer = loop.call_later(self._endpoint.drain_timeout, self._stuck)
            await asyncio.shield(drained)  # one waiter cancelled must not cancel the others
        return self._state == _OPEN

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake: no frame is written after this one. The peer has the
        endpoint's `close_timeout` to answer before the connection is cut. The frames corked
        before it go first (their budget check may close the connection as too slow instead)."""
        self.uncork()
        if self._state != _OPEN:
            return
        transport = self._transport
        transport.write(frames.close_frame(code, reason))
        self._state = _CLOSING
        self.close_code = code
        loop = asyncio.get_running_loop()
        self._close_timer = loop.call_later(self._endpoint.close_timeout, transport.abort)
        self._wake_drainer()
        self._end()

    def pause_reading(self) -> None:
        """Stop reading the peer (its own TCP window then slows it down); no message is handed
        to the handler until `resume_reading`."""
        self._held = True
        self._update_reading()

    def resume_reading(self) -> None:
        self._held = False
        self._update_reading()

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
            upgrade = handshake.upgrade(
                bytes(request[: head_end + 4]), self._endpoint.path, *self._endpoint.also_paths
            )
        except handshake.Refused as refused:
            self._state = _CLOSED
            transport.write(refused.response)
            transport.close()
            return
        transport.write(upgrade.response)
        self._state = _OPEN
        self.last_received = time.monotonic()
        self._handler = self._endpoint.open(self, upgrade.query)
        rest = request[head_end + 4 :]
        if rest:
            self.data_received(bytes(rest))

    def _parse(self, buffer: bytes | bytearray) -> None:
        """Handle the whole frames in `buffer` while reading is on, up to FAIR_SHARE_BYTES of
        them in this turn of the loop; keep the rest."""
        start = 0
        max_size = self._endpoint.max_message_bytes
        try:
            while self._reading and self._state != _CLOSED and start < FAIR_SHARE_BYTES:
                message = self._message
                limit = max_size if message is None else max_size - len(message)
                frame = frames.parse(buffer, start, limit)
                if frame is None:
                    break
                opcode, fin, payload, start = frame
                self._frame(opcode, fin, payload)
        except frames.ProtocolError as e:
            self._pong = None
            self._fail(e.code, e.reason)
            return
        if start == len(buffer) or self._state == _CLOSED:
            self._buffer = None
        elif buffer is self._buffer:
            del self._buffer[:start]
        else:
            self._buffer = bytearray(buffer[start:])
        if start:
            self.last_received = time.monotonic()  # once per read, not per frame
            if self._pong is not None:
                pong, self._pong = self._pong, None
                self.write(frames.pong_frame(pong))
            if start >= FAIR_SHARE_BYTES and self._reading:
                self._take_turns()

    def _parse_buffered(self) -> None:
        """Reading is back on: handle what was received while it was off, and read the socket
        again only once that is done (else each pause would leave one more read behind)."""
        if not (self._reading and _HANDSHAKE < self._state < _CLOSED):
            return
        if self._buffer is not None:
            self._parse(self._buffer)
        if self._reading and self._state != _CLOSED:
            self._transport.resume_reading()

    def _take_turns(self) -> None:
        """This connection had its share of the turn: the rest of what it sent waits for the
        next one. Without it, a peer that sends fast would have its whole read handled, and be
        read again and again (libuv reads a busy socket up to 32 times in a row), while every
        other connection waits."""
        self._yielded = True
        self._update_reading()
        asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._yielded = False
        self._update_reading()

    def _update_reading(self) -> None:
        """Read the peer exactly while neither the transport, nor the handler, nor fairness
        (`_take_turns`) says stop."""
        reading = not (self._paused or self._held or self._yielded)
        if reading == self._reading or self._state == _CLOSED:
            return
        self._reading = reading
        if not reading:
            self._transport.pause_reading()
        elif self._buffer:  # not from inside a callback of the handler's or the transport's
            asyncio.get_running_loop().call_soon(self._parse_buffered)
        else:
            self._transport.resume_reading()

    def _frame(self, opcode: int, fin: bool, payload: bytes) -> None:
        if opcode == frames.PING:  # answered once the read is handled (RFC 6455 §5.5.3
            self._pong = payload  # allows answering only the latest of several pings)
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
            message += payload
            if self._decoder is not None:
                _check_utf8(self._decoder, payload, fin)
            if not fin:
                return
            self._message = self._decoder = None
            self._deliver(self._message_opcode, bytes(message))
        elif message is not None:
            raise frames.ProtocolError(
                CloseCode.PROTOCOL_VIOLATION, "a fragmented message is unfinished"
            )
        elif fin:
            if opcode == frames.TEXT:
                _check_utf8(None, payload, True)
            self._deliver(opcode, payload)
        else:
            self._message, self._message_opcode = bytearray(payload), opcode
            if opcode == frames.TEXT:  # checked as it comes, so bad text fails at once
                self._decoder = codecs.getincrementaldecoder("utf-8")()
                _check_utf8(self._decoder, payload, False)

    def _deliver(self, opcode: int, payload: bytes) -> None:
        if self._state == _OPEN and self._handler is not None:  # closing: no longer matters
            self._handler.received(payload, opcode == frames.TEXT)

    def _closed_by_peer(self, payload: bytes) -> None:
        self.uncork()  # what was written before the peer's close still goes before our answer
        if self._state == _OPEN:  # answer, then close the TCP connection (RFC 6455 §7.1.1)
            self._transport.write(frames.close_reply(payload))
            self.close_code = int.from_bytes(payload[:2], "big") if payload else NO_STATUS
            self._end()
        self._state = _CLOSED
        self._transport.close()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): say why if we still may, then cut it."""
        if self._state == _OPEN:
            self.close(code, reason)
        self._state = _CLOSED
        self._buffer = self._message = self._decoder = None
        self._transport.close()

    def _stuck(self) -> None:
        """A drain waited `drain_timeout` for a peer that does not read."""
        self._drain_timer = None
        self.close(CloseCode.SLOW_CONSUMER, "too slow: not reading")

    def _end(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.closed()

    def _wake_drainer(self) -> None:
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)


def _check_utf8(decoder: codecs.IncrementalDecoder | None, data: bytes, final: bool) -> None:
    """Fail with 1007 on text that is not UTF-8 (RFC 6455 §8.1)."""
    try:
        if decoder is None:
            data.decode()
        else:
            decoder.decode(data, final)
    except UnicodeDecodeError:
        raise frames.ProtocolError(CloseCode.INVALID_DATA, "text is not UTF-8") from None
