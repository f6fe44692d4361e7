"""One exception tree for every refusal, so each dialect renders the same rule its own way.

The core raises `RttError` with the brainCloud status and reason code (API.md §6); front doors
translate it to their wire shape. Close codes for the RTT socket live here too.
"""

from __future__ import annotations

from enum import IntEnum


class RttError(Exception):
    """A refusal the caller can act on: HTTP-like `status`, numeric `reason_code`, a message."""

    def __init__(self, status: int, reason_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason_code = reason_code
        self.message = message

    def body(self) -> dict[str, object]:
        """The brainCloud error object (API.md §6), the same on HTTP and on the socket."""
        return {
            "status": self.status,
            "reason_code": self.reason_code,
            "status_message": self.message,
            "severity": "ERROR",
        }


class Reason(IntEnum):
    """brainCloud reason codes used by rtt (API.md §6)."""

    INVALID_REQUEST = 40001
    BAD_AUTH = 40304
    MISSING_PARAMETER = 40358
    S2S_SESSION_EXPIRED = 40365
    BAD_CONTEXT = 40383
    BAD_CRITERIA = 40384
    MESSAGE_NOT_FOUND = 40595
    VERSION_MISMATCH = 40598
    TOO_LARGE = 40600
    FEATURE_NOT_ENABLED = 40601
    BAD_FROM_ID = 40617
    BAD_FROM_NAME = 40618
    TOO_MANY_RECIPIENTS = 40621
    SYSTEM_CHANNEL_READ_ONLY = 40640
    RATE_LIMITED = 40650
    ENGINE_UNAVAILABLE = 50301
    SERVER_RESTARTING = 50302  # DISCONNECT before 1012: the node is stopping, reconnect
    # brainCloud client API (/dispatcherv2): the codes its client library knows
    MISSING_IDENTITY = 40206  # no such identity and forceCreate is false
    BAD_SIGNATURE = 40301  # X-SIG does not match the packet and the app's secret
    SESSION_EXPIRED = 40303  # the client re-authenticates on this (and on 40304)
    WRONG_PASSWORD = 40307  # brainCloud's TOKEN_DOES_NOT_MATCH_USER
    BAD_AUTHENTICATION_TYPE = 40315
    UNKNOWN_APP = 40316  # brainCloud's INVALID_GAME_ID


def invalid(message: str) -> RttError:
    """400/40001: the request is malformed (wrong type, bad value)."""
    return RttError(400, Reason.INVALID_REQUEST, message)


def missing(name: str) -> RttError:
    """400/40358: a required parameter is absent."""
    return RttError(400, Reason.MISSING_PARAMETER, f"missing parameter: {name}")


def bad_auth(message: str = "bad credentials") -> RttError:
    """403/40304: who is calling could not be established; nothing else was read."""
    return RttError(403, Reason.BAD_AUTH, message)


def not_found(message: str = "message not found") -> RttError:
    """400/40595: a named message does not exist (in that box)."""
    return RttError(400, Reason.MESSAGE_NOT_FOUND, message)


def read_only(detail: str = "system channels are read-only") -> RttError:
    """403/40640: a client acting on the app's one-way system channel (or posing as the app)."""
    return RttError(403, Reason.SYSTEM_CHANNEL_READ_ONLY, f"SYSTEM_CHANNEL_READ_ONLY: {detail}")


def unavailable(message: str = "storage is unavailable; retry shortly") -> RttError:
    """503: the engine did not answer in time and nothing was written; retrying is safe."""
    return RttError(503, Reason.ENGINE_UNAVAILABLE, message)


class CloseCode(IntEnum):
    """Every WebSocket close code rtt sends (RFC 6455 §7.4 and its own 4xxx), in one place, so
    clients can tell why a socket ended and the code says which is which."""

    NORMAL = 1000  # the client said DISCONNECT
    PROTOCOL_VIOLATION = 1002  # RFC 6455 broken: unmasked, reserved bits, bad lengths, ...
    INVALID_DATA = 1007  # a text message (or close reason) that is not UTF-8
    TOO_BIG = 1009  # a message over the largest app's max_frame_bytes + headroom
    INTERNAL_ERROR = 1011  # a bug: logged with its traceback
    SERVICE_RESTART = 1012  # the node is shutting down: reconnect, possibly elsewhere
    TRY_AGAIN_LATER = 1013  # storage unavailable
    PROTOCOL_ERROR = 4000  # RTT broken: anything before CONNECT, a malformed CONNECT
    AUTH_FAILED = 4001
    HEARTBEAT_TIMEOUT = 4002
    SLOW_CONSUMER = 4003  # unread bytes over the connection's budget: resume with since
