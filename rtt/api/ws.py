"""`GET /rtt`: the brainCloud-style RTT socket (API.md §4).

CONNECT authenticates with a JWT, then the socket carries pushed stream frames one way and
request/response pairs (`requestId`) the other. A socket silent for twice heartbeatSeconds closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from rtt import tokens
from rtt.core.registry import Caller, dispatch
from rtt.domain.messages import new_id
from rtt.domain.ratelimit import TokenBucket
from rtt.engines.base import EngineUnavailable
from rtt.errors import CloseCode, Reason, RttError, invalid
from rtt.protocol import dumps, loads, unsequenced
from rtt.realtime.session import Session
from rtt.realtime.wire import SCOPE_KEY, DirectWriter, text_frame
from rtt.runtime import Node


class _Refused(Exception):
    def __init__(self, reason: str, code: int, close: CloseCode) -> None:
        super().__init__(reason)
        self.reason, self.code, self.close = reason, code, close


STALE = -1


async def _handshake(node: Node, websocket: WebSocket) -> tuple[tokens.Identity, int | None]:
    """Wait for CONNECT; return who connected and the `since` cursor, or raise _Refused."""
    try:
        async with asyncio.timeout(node.settings.heartbeat_seconds * 2):
            text = await websocket.receive_text()
        frame = loads(text)
    except (TimeoutError, ValueError, KeyError) as e:
        raise _Refused(
            "expected rtt/CONNECT", Reason.INVALID_REQUEST, CloseCode.PROTOCOL_ERROR
        ) from e
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
    data: dict[str, Any] = frame["data"] if isinstance(frame.get("data"), dict) else {}
    auth: dict[str, Any] = data["auth"] if isinstance(data.get("auth"), dict) else {}
    token = websocket.query_params.get("token") or auth.get("token")
    try:
        identity = tokens.verify(token, node.settings.apps)
    except tokens.TokenError as e:
        raise _Refused(str(e), Reason.BAD_AUTH, CloseCode.AUTH_FAILED) from e
    if data.get("appId") not in (None, identity.app) or data.get("profileId") not in (
        None,
        identity.profile,
    ):
        raise _Refused(
            "appId/profileId do not match the token", Reason.BAD_AUTH, CloseCode.AUTH_FAILED
        )
    if not node.settings.apps[identity.app].features.rtt:
        raise _Refused(
            "rtt is not enabled for this app", Reason.FEATURE_NOT_ENABLED, CloseCode.AUTH_FAILED
        )
    since = data.get("since")
    if since is not None and (isinstance(since, bool) or not isinstance(since, int) or since < 0):
        raise _Refused(
            "since must be a non-negative integer", Reason.INVALID_REQUEST, CloseCode.PROTOCOL_ERROR
        )
    epoch = data.get("epoch")
    if since is not None and isinstance(epoch, str) and epoch != node.engine.store.epoch:
        since = STALE  # a cursor into a stream the store no longer has
    return identity, since


async def rtt_socket(node: Node, websocket: WebSocket) -> None:
    """One client connection, from CONNECT to close."""
    wire: DirectWriter = websocket.scope["extensions"][SCOPE_KEY]
    await websocket.accept()
    try:
        identity, since = await _handshake(node, websocket)
    except _Refused as refused:
        with contextlib.suppress(Exception):
            wire.write(
                text_frame(
                    unsequenced(
                        "rtt", "DISCONNECT", {"reason": refused.reason, "reasonCode": refused.code}
                    )
                )
            )
            await websocket.close(refused.close, refused.reason[:100])
        return
    except WebSocketDisconnect:
        return

    async def close(code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await websocket.close(code, reason)

    session = Session(
        identity.app,
        identity.profile,
        node.engine.store,
        wire,
        close,
        node.settings.session_buffer_bytes,
    )
    try:
        await node.hub.join(session)
        latest = await node.engine.store.latest_seq(identity.app, identity.profile)
        session.send_now(
            unsequenced(
                "rtt",
                "CONNECT",
                {
                    "cxId": new_id(),
                    "heartbeatSeconds": node.settings.heartbeat_seconds,
                    "seq": latest,
                    "epoch": node.engine.store.epoch,
                },
            )
        )
        # without `since`, go live exactly after the seq the CONNECT reply announced: reading
        # the latest position again could skip items committed in between
        if since == STALE:
            session.send_now(unsequenced("rtt", "RESYNC", {"seq": latest}))
        await session.resume(latest if since in (None, STALE) else since)
        await _serve(node, websocket, session, identity)
    except EngineUnavailable:
        await close(CloseCode.TRY_AGAIN_LATER, "storage unavailable: retry shortly")
    finally:
        await node.hub.leave(session)
        await session.stop()


async def _serve(
    node: Node, websocket: WebSocket, session: Session, identity: tokens.Identity
) -> None:
    """The receive loop: heartbeats, DISCONNECT, and requests answered in order."""
    app = node.settings.apps[identity.app]
    caller = Caller(identity.app, app, identity.profile, identity.name)
    bucket = TokenBucket(app.limits.client_requests_per_second, time.monotonic())
    silence = node.settings.heartbeat_seconds * 2
    while True:
        try:
            async with asyncio.timeout(silence):  # no task per frame, unlike wait_for
                message = await websocket.receive()
        except TimeoutError:
            session.send_now(
                unsequenced(
                    "rtt", "DISCONNECT", {"reason": "heartbeat timeout", "reasonCode": 40001}
                )
            )
            await websocket.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            session.send_now(_error_reply({}, invalid("frames must be JSON text")))
            continue
        if (
            len(text) > app.limits.max_frame_bytes
            or len(text.encode()) > app.limits.max_frame_bytes
        ):
            session.send_now(
                _error_reply(
                    {}, RttError(400, Reason.TOO_LARGE, "frame larger than max_frame_bytes")
                )
            )
            continue
        try:
            frame = loads(text)
        except ValueError:
            session.send_now(_error_reply({}, invalid("frame is not JSON")))
            continue
        if not isinstance(frame, dict):
            session.send_now(_error_reply({}, invalid("frame must be a JSON object")))
            continue
        if frame.get("service") == "rtt":
            operation = frame.get("operation")
            if operation == "HEARTBEAT":
                session.send_now(unsequenced("rtt", "HEARTBEAT", None))
                continue
            if operation == "DISCONNECT":
                await websocket.close(CloseCode.NORMAL, "client disconnect")
                return
        if not bucket.take(time.monotonic()):
            session.send_now(
                _error_reply(frame, RttError(429, Reason.RATE_LIMITED, "too many requests"))
            )
            continue
        session.send_now(await _answer(node, caller, frame))


async def _answer(node: Node, caller: Caller, frame: dict[str, Any]) -> bytes:
    service, operation = frame.get("service"), frame.get("operation")
    try:
        data = await dispatch(node.core, caller, service, operation, frame.get("data"))
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
