"""uvicorn's HTTP/1.1 protocol with the limits it lacks: deadlines for a request's head and body,
and a ceiling on the node's open connections.

uvicorn (httptools) holds a connection for as long as its peer keeps it open: a request whose
head or body never completes holds a file descriptor forever, and nothing stops a peer from
opening more until the process runs out of them and stops accepting anyone. Here:

- **Head deadline** (`header_timeout`): a request's head must arrive whole within it, counted
  from accept for a connection's first request and from the first byte of each later keep-alive
  request. A partial head is answered 408 and closed; a connection that sent nothing at all is
  closed silently, like an idle keep-alive one (uvicorn's `timeout_keep_alive`).
- **Head size** (`max_head_bytes`): httptools keeps every header line until the head ends, so
  a peer streaming header lines at loopback speed grew the node by 1.4 GB in 3 s. A head still
  incomplete past this many bytes is answered 431 and closed.
- **Body deadline** (`body_timeout`): from the end of the head to the body's last byte. The
  request is answered 408 (unless a response already started) and closed.
- **Connection ceiling** (`max_connections`): open connections, HTTP and WebSocket alike
  (uvicorn's `server_state.connections` holds both), checked at accept by the front door
  (rtt/front_door.py) that every connection starts with. A connection accepted over it is
  answered 503 at once (`Refusal`) and half-closed: its
  input is discarded until the peer closes, for at most `linger` seconds, since closing a socket
  with unread input resets it and many clients then lose the 503. At most `max_connections // 4`
  refusals linger at once; beyond that a refusal closes at once. So the node's sockets are
  bounded by `sockets_at_most(max_connections)`.

One timer per connection watches whichever deadline applies. Moving from head to body to the
next request only moves the deadline (the timer, when it fires early, re-arms itself for the
current one), so a request on a busy keep-alive connection usually costs no timer call: about
1 µs of bookkeeping in all.

Expected events (a deadline passed, a client gone mid-body, a refusal) are logged as one short
line, never a traceback, and each kind at most once a second with a count of those it stands
for, so a flood of them is a few lines. This is a transport layer, like rtt/websocket: it knows
nothing of the app; its own answers carry the same JSON error body as every other (rtt/errors).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from rtt.errors import Reason, RttError, invalid, unavailable
from rtt.protocol import dumps

log = logging.getLogger("rtt.http")

LOG_PERIOD = 1.0  # seconds between two log lines about the same kind of event


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What the protocol enforces (from Settings: RTT_MAX_CONNECTIONS,
    RTT_HTTP_HEADER_TIMEOUT_SECONDS, RTT_HTTP_BODY_TIMEOUT_SECONDS, RTT_CLOSE_TIMEOUT_SECONDS)."""

    max_connections: int
    header_timeout: float
    body_timeout: float
    linger: float
    max_head_bytes: int


def lingering_at_most(max_connections: int) -> int:
    """How many refused connections may wait for their peer's close at once."""
    return max_connections // 4


def sockets_at_most(max_connections: int) -> int:
    """The most client sockets a node holds: open connections plus lingering refusals."""
    return max_connections + lingering_at_most(max_connections)


def _answer(error: RttError, *headers: bytes) -> bytes:
    """A whole HTTP response that ends the connection, with the error's JSON body."""
    body = dumps(error.body())
    return b"".join(
        [
            STATUS_LINE[error.status],
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            *headers,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


MALFORMED = _answer(invalid("malformed HTTP request"))


def _late(message: str) -> RttError:
    """408/40001: the request did not arrive in time."""
    return RttError(408, Reason.INVALID_REQUEST, message)


class _Tally:
    """One kind of event, logged at most once per LOG_PERIOD with how many it stands for."""

    __slots__ = ("_count", "_last", "_level", "_what")

    def __init__(self, level: int, what: str) -> None:
        self._level, self._what = level, what
        self._count = 0
        self._last = -LOG_PERIOD

    def note(self, peer: object) -> None:
        self._count += 1
        now = time.monotonic()
        if now - self._last < LOG_PERIOD:
            return
        more = f" (and {self._count - 1} more since the last such line)" if self._count > 1 else ""
        log.log(self._level, "%s: %s%s", _address(peer), self._what, more)
        self._count, self._last = 0, now


def _address(peer: object) -> str:
    """host:port of a peer address (IPv6 ones have four fields)."""
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "client"


class _Edge:
    """One server's limits, its prepared answers and its tallies, shared by its connections."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.lingering = 0
        self.full = _answer(
            unavailable(f"the node is at its connection limit ({limits.max_connections})"),
            b"retry-after: 1\r\n",
        )
        head, body = limits.header_timeout, limits.body_timeout
        self.head_late = _answer(_late(f"request head not complete within {head:g} s"))
        self.head_large = _answer(
            RttError(431, Reason.TOO_LARGE, f"request head over {limits.max_head_bytes} bytes")
        )
        self.body_late = _answer(_late(f"request body not complete within {body:g} s"))
        self.refusals = _Tally(logging.WARNING, "refused with 503: connection limit reached")
        self.head_timeouts = _Tally(logging.INFO, f"closed: head not complete within {head:g} s")
        self.head_overflows = _Tally(logging.INFO, "closed: request head too large")
        self.body_timeouts = _Tally(logging.INFO, f"closed: body not complete within {body:g} s")
        self.disconnects = _Tally(logging.INFO, "closed the connection mid-body")


# what the connection is waiting for: nothing yet (just accepted), the rest of a head, the rest
# of a body, or nothing (between requests, or handed over to a WebSocket protocol)
WAITING, _HEAD, _BODY, _IDLE = range(4)


class EdgeHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines. Use the class that `http_protocol(limits)`
    returns: it is bound to one server's limits. The front door (rtt/front_door.py) builds it
    for a connection it holds under the ceiling, then arms its first head deadline (`arm`,
    from accept)."""

    edge: ClassVar[_Edge]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._phase = WAITING
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._peer_closed = False
        self._head_bytes = 0  # received since the head began (bounded by max_head_bytes)

    # --- asyncio.Protocol --------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        # bytes read while no body is due belong to a head (a read that ends a body and starts
        # the next head is not counted: the head is then undercounted by one read at most)
        if self._phase != _BODY:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._phase in (WAITING, _HEAD)
            and self._head_bytes > self.edge.limits.max_head_bytes
            and not self.transport.is_closing()
        ):
            self._phase = _IDLE
            self.transport.write(self.edge.head_large)
            self.edge.head_overflows.note(self.client)
            self.transport.close()

    def eof_received(self) -> None:
        self._peer_closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._phase == _BODY and (self._peer_closed or exc is not None):
            self.edge.disconnects.note(self.client)
        self._phase = _IDLE
        super().connection_lost(exc)

    # --- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase == WAITING:  # the first request: its deadline runs from accept
            self._phase = _HEAD
        else:
            self.arm(_HEAD, self.edge.limits.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._head_bytes = 0
        self.arm(_BODY, self.edge.limits.body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._phase = _IDLE

    # --- uvicorn -----------------------------------------------------------------------------

    def handle_websocket_upgrade(self) -> None:
        """The WebSocket protocol owns the connection from here (and its own timers)."""
        self._phase = _IDLE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().handle_websocket_upgrade()
        # httptools' parser and this protocol refer to each other: left to the collector, the
        # pair (with the request's scope and headers) outlived the upgrade by many collections,
        # ~1 KiB per socket; dropping the parser frees both now
        self.parser = None  # type: ignore[assignment]  # as uvicorn does at close

    def send_400_response(self, msg: str) -> None:
        """A request httptools cannot parse: the same JSON error body as every other answer."""
        self._phase = _IDLE
        self.transport.write(MALFORMED)
        self.transport.close()

    # --- deadlines ---------------------------------------------------------------------------

    def arm(self, phase: int, timeout: float) -> None:
        """Enter `phase`, due `timeout` seconds from now; the timer only moves if it would fire
        after the new deadline."""
        deadline = self.loop.time() + timeout
        self._phase, self._deadline = phase, deadline
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(deadline, self._check)
        self._timer_at = deadline

    def _check(self) -> None:
        self._timer = None
        if self._phase == _IDLE or self.transport.is_closing():
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check)
            self._timer_at = self._deadline
            return
        phase, self._phase = self._phase, _IDLE
        edge = self.edge
        if phase == _HEAD:
            self.transport.write(edge.head_late)
            edge.head_timeouts.note(self.client)
        elif phase == _BODY:
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(edge.body_late)
            edge.body_timeouts.note(self.client)
        self.transport.close()


class Refusal(asyncio.Protocol):
    """A connection accepted over the ceiling: answered 503, then half-closed, its input
    discarded until the peer closes or `linger` passes."""

    __slots__ = ("_edge", "_timer")

    def __init__(self, edge: _Edge, timer: asyncio.TimerHandle) -> None:
        self._edge, self._timer = edge, timer

    @staticmethod
    def answer(transport: asyncio.Transport, edge: _Edge) -> None:
        transport.write(edge.full)
        edge.refusals.note(transport.get_extra_info("peername"))
        if edge.lingering >= lingering_at_most(edge.limits.max_connections) or (
            not transport.can_write_eof()
        ):
            transport.close()
            return
        transport.write_eof()
        edge.lingering += 1
        timer = asyncio.get_running_loop().call_later(edge.limits.linger, transport.abort)
        transport.set_protocol(Refusal(edge, timer))

    def data_received(self, data: bytes) -> None:
        pass  # the request is refused whatever it says

    def eof_received(self) -> bool:
        return False  # the peer has read the 503 and closed: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._edge.lingering -= 1


def http_protocol(limits: HttpLimits) -> type[EdgeHttpProtocol]:
    """The protocol class for one server (uvicorn builds one instance per connection)."""

    class HttpProtocol(EdgeHttpProtocol):
        edge = _Edge(limits)

    return HttpProtocol
