"""The protocol every accepted connection starts with: its first read decides who owns it.

A WebSocket client sends its whole upgrade request in one write and waits for the answer. When
the first read is exactly such a request, well formed, the connection goes straight to the
WebSocket protocol, which parses and answers the handshake itself (rtt/websocket/handshake.py).
Before, every socket first got a uvicorn HTTP protocol, an httptools parser calling back into
Python for each header, an ASGI scope, and then the request written out again for the WebSocket
protocol to parse a second time: 31 % of a connect's CPU (BENCHMARKS.md). Anything else (an
HTTP request, a head in pieces, a request that is not plain enough to be sure of) goes to the
HTTP protocol (rtt/http_protocol.py) as if it had owned the connection since accept: the same
connection ceiling, and its head deadline still counted from accept.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, ClassVar, cast

from uvicorn.config import Config
from uvicorn.server import ServerState

from rtt.http_protocol import WAITING, EdgeHttpProtocol, HttpLimits, Refusal, http_protocol
from rtt.websocket.handshake import MAX_REQUEST_BYTES

# A request head plain enough to hand over unparsed: `GET <target> HTTP/1.1`, header lines of a
# token, a colon and visible ASCII, nothing after the blank line (RFC 9112 §3, §5).
_PLAIN_GET = re.compile(
    rb"GET [!-~]+ HTTP/1\.1\r\n(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t -~]*\r\n)*\r\n"
)
# what makes uvicorn upgrade a request to its WebSocket protocol: `Upgrade: websocket` and a
# Connection header naming `upgrade`
_UPGRADE = re.compile(rb"\r\nupgrade:[ \t]*websocket[ \t]*\r\n", re.IGNORECASE)
_CONNECTION_UPGRADE = re.compile(
    rb"\r\nconnection:(?:[^\r]*,)?[ \t]*upgrade[ \t]*(?:,|\r\n)", re.IGNORECASE
)


def websocket_request(data: bytes, max_bytes: int) -> bool:
    """True if `data` is one whole, plain WebSocket upgrade request and nothing more."""
    return (
        len(data) <= max_bytes
        and _PLAIN_GET.fullmatch(data) is not None
        and _UPGRADE.search(data) is not None
        and _CONNECTION_UPGRADE.search(data) is not None
    )


class FrontDoor(asyncio.Protocol):
    """Holds a connection from accept to its first read. Use the class `front_door(limits)`
    returns: it is bound to one server's HTTP protocol."""

    http: ClassVar[type[EdgeHttpProtocol]]
    max_head_bytes: ClassVar[int]

    __slots__ = ("_app_state", "_config", "_deadline", "_server_state", "_timer", "_transport")

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._config, self._server_state, self._app_state = config, server_state, app_state
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's, which asyncio does not know
        edge = self.http.edge
        if len(self._server_state.connections) >= edge.limits.max_connections:
            Refusal.answer(transport, edge)
            return
        self._transport = transport
        self._server_state.connections.add(self)  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + edge.limits.header_timeout
        # nothing sent by the deadline: closed silently, as the HTTP protocol does
        self._timer = loop.call_at(self._deadline, transport.close)

    def data_received(self, data: bytes) -> None:
        self._leave()
        transport = self._transport
        if websocket_request(data, self.max_head_bytes):
            owner: asyncio.Protocol = self._config.ws_protocol_class(  # type: ignore[call-arg, misc]
                config=self._config, server_state=self._server_state, app_state=self._app_state
            )
            owner.connection_made(transport)
        else:
            http = self.http(self._config, self._server_state, self._app_state)
            http.connection_made(transport)
            remaining = self._deadline - asyncio.get_running_loop().time()
            http.arm(WAITING, max(0.0, remaining))  # the head is still due from accept
            owner = http
        transport.set_protocol(owner)
        owner.data_received(data)

    def eof_received(self) -> bool:
        return False  # closed before saying anything: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._leave()

    def shutdown(self) -> None:
        """uvicorn is stopping: nothing was asked yet, so nothing is owed."""
        self._transport.close()

    def _leave(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._server_state.connections.discard(self)


def front_door(limits: HttpLimits) -> type[FrontDoor]:
    """The protocol class for one server (uvicorn builds one instance per connection)."""

    class Door(FrontDoor):
        http = http_protocol(limits)
        max_head_bytes = min(MAX_REQUEST_BYTES, limits.max_head_bytes)

    return Door
