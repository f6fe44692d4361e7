"""`GET /rtt`: the brainCloud-style RTT socket (API.md §4), above the WebSocket protocol.

CONNECT authenticates with a JWT, then the socket carries pushed stream frames one way and
request/response pairs (`requestId`) the other. Every period is twice heartbeatSeconds: CONNECT
must come within one of the upgrade, and a connected socket that receives no frame at all (a
ping counts) for one closes.

rtt/websocket/protocol.py calls `RttSocket.received` with each whole message, in a
callback. What needs no await (heartbeats, refusals, malformed frames, rate limits) is answered
there and then. What does (CONNECT, a request) runs in a task, one at a time per socket: messages
that arrive meanwhile wait in a backlog, so replies keep request order. The backlog is bounded
(RTT_SOCKET_BACKLOG messages, RTT_SOCKET_BUFFER_BYTES bytes): at either bound the socket stops
reading. A reply is written once the client has read what came before it (`drain`), so a
reading client is never closed as slow because of replies. An idle socket has no task, only a
timer that checks for silence once per silence period.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, Protocol

from rtt import tokens
from rtt.core.node import Node
from rtt.core.registry import Caller, dispatch
from rtt.domain.messages import new_id
from rtt.domain.ratelimit import TokenBucket
from rtt.engines.base import ClientSession, EngineUnavailable
from rtt.errors import CloseCode, Reason, RttError, invalid
from rtt.protocol import TooDeep, dumps, loads_untrusted, unsequenced
from rtt.realtime.session import Healing, Session, Wire
from rtt.websocket.frames import text_frame
from rtt.websocket.protocol import Endpoint, WebSocketProtocol

log = logging.getLogger("rtt.socket")

PATH = "/rtt"
BRAINCLOUD_PATH = "/"  # the brainCloud client library dials host:port with no path
TEXT_FIN, BINARY_FIN = b"\x81", b"\x82"  # first byte of a whole text / binary frame
HEADROOM = 64 * 1024  # a message this much over an app's limit still gets a TOO_LARGE reply
STALE = -1

Work = Coroutine[Any, Any, None]


def heartbeat_seconds(node: Node) -> int:
    """The heartbeat period clients are told, a whole number of seconds (typed clients cast
    it to an integer; brainCloud's client hands it to setInterval): at least 1."""
    return max(1, int(node.settings.heartbeat_seconds))


class Gateway(Wire, Protocol):
    """What a socket needs of its connection besides the session's Wire."""

    last_received: float  # time.monotonic() of the last whole frame from the client

    @property
    def close_code(self) -> int:
        """How the connection ended (read once it has): our close code, else the client's."""
        ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def spawn(self, work: Work) -> asyncio.Task[None]: ...


class _Refused(Exception):
    def __init__(self, reason: str, code: int, close: CloseCode) -> None:
        super().__init__(reason)
        self.reason, self.code, self.close = reason, code, close


def _expected_connect() -> _Refused:
    return _Refused("expected rtt/CONNECT", Reason.INVALID_REQUEST, CloseCode.PROTOCOL_ERROR)


def _connect_data(node: Node, payload: bytes | None) -> dict[str, Any]:
    """The first message must be a CONNECT: its data object, or raise _Refused."""
    try:
        frame = (
            loads_untrusted(payload, node.settings.max_json_depth) if payload is not None else None
        )
    except ValueError:
        frame = None
    if frame is None:
        raise _expected_connect()
    if (
        not isinstance(frame, dict)
        or frame.get("service") != "rtt"
        or frame.get("operation") != "CONNECT"
    ):
        raise _Refused(
            "nothing is accepted before rtt/CONNECT",
            Reason.INVALID_REQUEST,
            CloseCode.PROTOCOL_ERROR,
        )
    return frame["data"] if isinstance(frame.get("data"), dict) else {}


def _auth(data: dict[str, Any]) -> dict[str, Any]:
    return data["auth"] if isinstance(data.get("auth"), dict) else {}


def _check_connect(
    node: Node, data: dict[str, Any], query_token: str | None
) -> tuple[tokens.Identity, int | None]:
    """A CONNECT with a token: return (identity, since), or raise _Refused."""
    try:
        identity = tokens.verify(query_token or _auth(data).get("token"), node.settings.apps)
    except tokens.TokenError as e:
        raise _Refused(str(e), Reason.BAD_AUTH, CloseCode.AUTH_FAILED) from e
    if data.get("appId") not in (None, identity.app) or data.get("profileId") not in (
        None,
        identity.profile,
    ):
        raise _Refused(
            "appId/profileId do not match the token", Reason.BAD_AUTH, CloseCode.AUTH_FAILED
        )
    _check_rtt_enabled(node, identity.app)
    return identity, _since(node, data)


def _check_rtt_enabled(node: Node, app: str) -> None:
    if not node.settings.apps[app].features.rtt:
        raise _Refused(
            "rtt is not enabled for this app", Reason.FEATURE_NOT_ENABLED, CloseCode.AUTH_FAILED
        )


def _since(node: Node, data: dict[str, Any]) -> int | None:
    """CONNECT's resume cursor: None (go live), STALE (RESYNC) or a seq; _Refused if bad."""
    since = data.get("since")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        raise _Refused(
            "since must be a non-negative integer", Reason.INVALID_REQUEST, CloseCode.PROTOCOL_ERROR
        )
    epoch = data.get("epoch")
    if since is not None and isinstance(epoch, str) and epoch != node.engine.store.epoch:
        since = STALE  # a cursor into a stream the store no longer has
    return since


def _check_session(data: dict[str, Any], session: ClientSession | None) -> ClientSession:
    """A CONNECT with an X-RTT-SECRET: the secret's session, if CONNECT names the same one."""
    refused = _Refused(
        "unknown, used or expired X-RTT-SECRET", Reason.BAD_AUTH, CloseCode.AUTH_FAILED
    )
    if session is None:
        raise refused
    claimed = (data.get("appId"), data.get("profileId"), data.get("sessionId"))
    bound = (session.app, session.profile, session.session_id)
    if any(value not in (None, expected) for value, expected in zip(claimed, bound, strict=True)):
        raise _Refused(
            "appId/profileId/sessionId do not match the X-RTT-SECRET",
            Reason.BAD_AUTH,
            CloseCode.AUTH_FAILED,
        )
    return session


class BinaryFrames:
    """The gateway of a socket opened by the brainCloud client library, which parses only
    binary messages (in Node.js its `ws` hands it a text message as a string, which it never
    parses; a browser's Blob likewise): every data frame goes out as binary. Only the opcode
    differs; the payload is the same JSON."""

    __slots__ = ("_gateway",)

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    @property
    def last_received(self) -> float:
        return self._gateway.last_received

    @last_received.setter
    def last_received(self, value: float) -> None:
        self._gateway.last_received = value

    @property
    def close_code(self) -> int:
        return self._gateway.close_code

    def write(self, frame: bytes) -> None:
        if frame[:1] == TEXT_FIN:
            frame = BINARY_FIN + frame[1:]
        self._gateway.write(frame)

    async def drain(self) -> bool:
        return await self._gateway.drain()

    def close(self, code: int, reason: str) -> None:
        self._gateway.close(code, reason)

    def pause_reading(self) -> None:
        self._gateway.pause_reading()

    def resume_reading(self) -> None:
        self._gateway.resume_reading()

    def spawn(self, work: Work) -> asyncio.Task[None]:
        return self._gateway.spawn(work)


class RttSocket:
    """One client connection, from the first message to the close."""

    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_bucket",
        "_caller",
        "_closed",
        "_gateway",
        "_healing",
        "_holding",
        "_node",
        "_secret",
        "_session",
        "_timer",
        "_token",
        "_work",
    )

    def __init__(
        self,
        node: Node,
        healing: Healing,
        gateway: Gateway,
        query_token: str | None,
        query_secret: str | None = None,
    ) -> None:
        self._node = node
        self._healing = healing
        self._gateway = gateway
        self._token = query_token  # until CONNECT
        self._secret = query_secret  # an X-RTT-SECRET (brainCloud client), until CONNECT
        self._session: Session | None = None
        self._caller: Caller | None = None
        self._bucket: TokenBucket | None = None
        self._backlog: deque[tuple[bytes, bool]] | None = None
        self._backlog_bytes = 0
        self._holding = False  # reading is paused because the backlog is full
        self._work: asyncio.Task[None] | None = None
        self._closed = False
        node.metrics.opened()
        self._timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self._silence_limit(), self._check_silence
        )

    # --- from the gateway --------------------------------------------------------------------

    def received(self, payload: bytes, text: bool) -> None:
        """A whole message from the client: answered now, or after the one in progress."""
        if self._work is None:
            work = self._handle(payload, text)
            if work is not None:
                self._work = self._gateway.spawn(self._run(work))
            return
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.append((payload, text))
        self._backlog_bytes += len(payload)
        if not self._holding and self._backlog_full(self._backlog):
            self._holding = True
            self._gateway.pause_reading()

    def _backlog_full(self, backlog: deque[tuple[bytes, bool]]) -> bool:
        """The backlog holds RTT_SOCKET_BACKLOG messages or RTT_SOCKET_BUFFER_BYTES bytes."""
        settings = self._node.settings
        return (
            len(backlog) >= settings.socket_backlog
            or self._backlog_bytes >= settings.socket_buffer_bytes
        )

    def closed(self) -> None:
        """The socket is closing: stop the stream; leave the hub once in-flight work is done."""
        self._closed = True
        self._node.metrics.closed(self._gateway.close_code)
        self._backlog = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._session is not None:
            self._gateway.spawn(self._leave(self._session, self._work))

    def going_away(self) -> None:
        """The node is stopping: tell the client to reconnect (elsewhere or once it is back)
        and resume with `since`; the gateway then closes with 1012."""
        self._node.hub.stopping()
        disconnect = unsequenced(
            "rtt",
            "DISCONNECT",
            {"reason": "server restarting; reconnect", "reasonCode": Reason.SERVER_RESTARTING},
        )
        self._gateway.write(text_frame(disconnect))

    # --- messages ----------------------------------------------------------------------------

    def _handle(self, payload: bytes, text: bool) -> Work | None:
        """Answer what can be answered now; return the work that needs awaiting, if any."""
        if self._session is None:
            return self._connect(payload if text else None)
        assert self._caller is not None and self._bucket is not None
        if not text:
            self._session.send_now(_error_reply({}, invalid("frames must be JSON text")))
            return None
        if len(payload) > self._caller.app.limits.max_frame_bytes:
            too_large = RttError(400, Reason.TOO_LARGE, "frame larger than max_frame_bytes")
            self._session.send_now(_error_reply({}, too_large))
            return None
        try:
            frame = loads_untrusted(payload, self._node.settings.max_json_depth)
        except TooDeep as e:
            self._session.send_now(_error_reply({}, invalid(str(e))))
            return None
        except ValueError:
            self._session.send_now(_error_reply({}, invalid("frame is not JSON")))
            return None
        if not isinstance(frame, dict):
            self._session.send_now(_error_reply({}, invalid("frame must be a JSON object")))
            return None
        if frame.get("service") == "rtt":
            operation = frame.get("operation")
            if operation == "HEARTBEAT":
                self._session.send_now(unsequenced("rtt", "HEARTBEAT", None))
                return None
            if operation == "DISCONNECT":
                self._gateway.close(CloseCode.NORMAL, "client disconnect")
                return None
        if not self._bucket.take(time.monotonic()):
            self._node.metrics.rate_limited(self._caller.dialect)
            limited = RttError(429, Reason.RATE_LIMITED, "too many requests")
            self._session.send_now(_error_reply(frame, limited))
            return None
        return self._answer(self._session, self._caller, frame)

    def _connect(self, payload: bytes | None) -> Work | None:
        node = self._node
        try:
            data = _connect_data(node, payload)
            secret = self._secret or _auth(data).get("X-RTT-SECRET")
            if secret is not None and not (self._token or _auth(data).get("token")):
                self._gateway = BinaryFrames(self._gateway)
                return self._connect_with_secret(str(secret), data)
            identity, since = _check_connect(node, data, self._token)
        except _Refused as refused:
            self._refuse(refused.reason, refused.code, refused.close)
            return None
        self._token = None
        return self._go_live(self._open(identity.app, identity.profile, identity.name), since)

    async def _connect_with_secret(self, secret: str, data: dict[str, Any]) -> None:
        """CONNECT as the brainCloud client sends it: the X-RTT-SECRET its session asked for
        (single use) and that session still live. Then the socket is like any other."""
        node = self._node
        self._secret = None
        accounts = node.engine.accounts
        try:
            session = _check_session(data, await accounts.take_rtt_secret(secret[:128]))
            _check_rtt_enabled(node, session.app)
            since = _since(node, data)
            live = await accounts.touch_session(
                session.session_id, node.settings.client_session_seconds
            )
            if live is None:
                raise _Refused("the session expired", Reason.SESSION_EXPIRED, CloseCode.AUTH_FAILED)
        except _Refused as refused:
            self._refuse(refused.reason, refused.code, refused.close)
            return
        if self._closed:  # gone while the engine answered: it never joined the hub
            return
        await self._go_live(self._open(live.app, live.profile, live.name or None), since)

    def _open(self, app_id: str, profile: str, name: str | None) -> Session:
        """The connected socket's caller, rate limit and session. The session exists before
        any await, so a close from here on always leaves the hub."""
        app = self._node.settings.apps[app_id]
        self._caller = Caller(app_id, app, profile, name)
        self._bucket = TokenBucket(app.limits.client_requests_per_second, time.monotonic())
        self._session = Session(
            app_id, profile, self._node.engine.store, self._gateway, self._healing
        )
        return self._session

    async def _go_live(self, session: Session, since: int | None) -> None:
        node = self._node
        await node.hub.join(session)
        latest = await node.engine.store.latest_seq(session.app, session.profile)
        session.send_now(
            unsequenced(
                "rtt",
                "CONNECT",
                {
                    "cxId": new_id(),
                    "heartbeatSeconds": heartbeat_seconds(node),
                    "seq": latest,
                    "epoch": node.engine.store.epoch,
                },
            )
        )
        if since == STALE:
            session.send_now(unsequenced("rtt", "RESYNC", {"seq": latest}))
        # without `since`, go live exactly after the seq the CONNECT reply announced: reading
        # the latest position again could skip items committed in between
        if since is None or since == STALE:
            session.start(latest)
        else:
            await session.resume(since)

    async def _answer(self, session: Session, caller: Caller, frame: dict[str, Any]) -> None:
        reply = await _reply(self._node, caller, frame)
        if await self._gateway.drain():  # at the client's pace: a reply never makes it "slow"
            session.send_now(reply)

    async def _run(self, work: Work | None) -> None:
        """Await `work`, then every backlogged message in order, until the backlog is empty."""
        try:
            while work is not None:
                await work
                work = None
                while work is None and self._backlog and not self._closed:
                    backlog = self._backlog
                    payload, text = backlog.popleft()
                    self._backlog_bytes -= len(payload)
                    if self._holding and not self._backlog_full(backlog):
                        self._holding = False
                        self._gateway.resume_reading()
                    work = self._handle(payload, text)
        except EngineUnavailable:
            self._gateway.close(CloseCode.TRY_AGAIN_LATER, "storage unavailable: retry shortly")
        except Exception:
            log.exception("socket failed")
            self._gateway.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self._work = None
            if work is not None:
                work.close()  # a backlogged request that will never run

    async def _leave(self, session: Session, work: asyncio.Task[None] | None) -> None:
        await session.stop()
        if work is not None:
            await asyncio.wait([work])  # a join in flight must land before the leave
        await self._node.hub.leave(session)

    # --- refusals and silence ----------------------------------------------------------------

    def _refuse(self, reason: str, code: int, close: CloseCode) -> None:
        """Say why in a DISCONNECT frame, then close with `close`."""
        disconnect = unsequenced("rtt", "DISCONNECT", {"reason": reason, "reasonCode": code})
        self._gateway.write(text_frame(disconnect))
        self._gateway.close(close, reason[:100])

    def _silence_limit(self) -> float:
        return self._node.settings.heartbeat_seconds * 2

    def _check_silence(self) -> None:
        """Fires once per silence period, not per frame: re-arm for what remains of it. Any
        frame counts (the gateway stamps each read), and so does a request in progress: its
        waits are bounded (the engine's timeouts, the gateway's drain timeout). Before CONNECT
        nothing counts: pings alone must not hold an unauthenticated socket open."""
        self._timer = None
        if self._session is None:
            refused = _expected_connect()
            self._refuse(refused.reason, refused.code, refused.close)
            return
        limit = self._silence_limit()
        remaining = self._gateway.last_received + limit - time.monotonic()
        if remaining > 0.001 or self._work is not None:
            delay = remaining if remaining > 0.001 else limit
            self._timer = asyncio.get_running_loop().call_later(delay, self._check_silence)
            return
        self._refuse("heartbeat timeout", Reason.INVALID_REQUEST, CloseCode.HEARTBEAT_TIMEOUT)


def endpoint(node: Node) -> Endpoint:
    """`/rtt` for the WebSocket protocol: messages up to the largest app's max_frame_bytes plus
    HEADROOM are read (an app's own limit then answers 40600); larger ones close with 1009.
    Each connection's unread bytes are bounded by RTT_SOCKET_BUFFER_BYTES; a reply or replay
    frame waits for a client that does not read for at most one silence period (twice
    heartbeatSeconds), then it closes 4003; a closing socket waits RTT_CLOSE_TIMEOUT_SECONDS
    for the client's close frame."""
    settings = node.settings
    largest = max(app.limits.max_frame_bytes for app in settings.apps.values())
    healing = Healing(
        settings.socket_buffer_bytes,
        settings.session_pending_bytes,
        settings.heals_in_flight,
        settings.heal_retry_seconds,
    )

    def open_socket(connection: WebSocketProtocol, query: dict[str, str]) -> RttSocket:
        return RttSocket(node, healing, connection, query.get("token"), query.get("X-RTT-SECRET"))

    return Endpoint(
        PATH,
        largest + HEADROOM,
        open_socket,
        buffer_bytes=settings.socket_buffer_bytes,
        drain_timeout=settings.heartbeat_seconds * 2,
        close_timeout=settings.close_timeout_seconds,
        also_paths=(BRAINCLOUD_PATH,),
    )


async def _reply(node: Node, caller: Caller, frame: dict[str, Any]) -> bytes:
    service, operation = frame.get("service"), frame.get("operation")
    try:
        data = await dispatch(node, caller, service, operation, frame.get("data"))
    except RttError as e:
        return _error_reply(frame, e)
    return dumps(
        {
            "service": service,
            "operation": operation,
            "requestId": frame.get("requestId"),
            "status": 200,
            "data": data,
        }
    )


def _error_reply(frame: dict[str, Any], error: RttError) -> bytes:
    return dumps(
        {
            "service": frame.get("service"),
            "operation": frame.get("operation"),
            "requestId": frame.get("requestId"),
            **error.body(),
        }
    )
