"""What `async for frame in client` yields: the profile's stream, live-only frames, and the
connection's own story (connected, disconnected, resync), each a small frozen dataclass so a
`match` statement or `isinstance` tells them apart and a type checker knows their fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Pushed:
    """One item of the profile's stream: always exactly the seq after the previous one, across
    reconnects (a message, an event, an update or a delete; API.md §4.5)."""

    seq: int
    service: str
    operation: str
    data: Any


@dataclass(frozen=True, slots=True)
class Live:
    """A frame outside the stream (an RTT-only event): not stored, so not replayed."""

    service: str
    operation: str
    data: Any


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is up: `seq` is the profile's latest position on the server, `resumed` says
    the client asked for what it missed since its last seq (replayed frames follow)."""

    url: str
    cx_id: str
    seq: int
    epoch: str | None
    heartbeat_seconds: float
    resumed: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection ended; the client reconnects by itself unless it was closed. `code` is the
    WebSocket close code (None if the connection dropped without one), `disconnect` the
    `rtt/DISCONNECT` data the server sent first, if any (reasonCode 50302: it is restarting)."""

    url: str
    code: int | None
    reason: str
    disconnect: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Resync:
    """The server no longer has the stream the client's cursor points into (data lost, or kept
    too briefly): the stream continues after `seq`; re-read the inbox to catch up."""

    seq: int


Frame = Pushed | Live | Connected | Disconnected | Resync


class ClientError(Exception):
    """Base of what the client raises."""


class Refused(ClientError):
    """The server refused the connection for good (a bad or expired token that a fresh one did
    not fix, rtt disabled for the app): `reason_code` is its DISCONNECT's reasonCode."""

    def __init__(self, reason: str, reason_code: int | None) -> None:
        super().__init__(f"{reason} ({reason_code})")
        self.reason, self.reason_code = reason, reason_code


class RequestError(ClientError):
    """A request answered with an error object (API.md §6)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(
            f"{reply.get('status')}/{reply.get('reason_code')}: {reply.get('status_message')}"
        )
        self.reply = reply
        self.status = reply.get("status")
        self.reason_code = reply.get("reason_code")


class ConnectionLost(ClientError):
    """The connection ended while a request waited for its answer: it may or may not have run."""
