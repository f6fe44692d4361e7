"""`POST /s2sdispatcher`: the brainCloud server-to-server envelope, stateless and session forms.

Credentials are checked before any other field is read. Sessions remember the responses of
their last packet, so a retried packet performs nothing twice; an `Idempotency-Key` header does
the same for any request within `idempotency_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeGuard

from starlette.requests import Request
from starlette.responses import Response

from rtt.api.http import json_response, read_json
from rtt.core.node import Node
from rtt.core.registry import Caller, dispatch
from rtt.domain.messages import new_id
from rtt.engines.base import EngineUnavailable, S2SSession
from rtt.errors import Reason, RttError, bad_auth, invalid, unavailable
from rtt.protocol import dumps

MAX_PACKET_MESSAGES = 50
MAX_PACKET_ID = 2**63 - 1  # what every store keeps as an integer
MAX_IDEMPOTENCY_KEY = 255
RETRY_AFTER_SECONDS = "1"


class _KeyLocks:
    """One lock per idempotency key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


_key_locks = _KeyLocks()
_session_locks = _KeyLocks()


def _authenticate(node: Node, fields: object) -> Caller:
    """The app's server credentials, compared in constant time; 403/40304 otherwise."""
    if not isinstance(fields, dict):
        raise bad_auth()
    app_id, server, secret = (
        fields.get("appId"),
        fields.get("serverName"),
        fields.get("serverSecret"),
    )
    app = node.settings.apps.get(app_id) if isinstance(app_id, str) else None
    expected = app.servers.get(server) if app and isinstance(server, str) else None
    if app is None or expected is None or not isinstance(secret, str):
        raise bad_auth("unknown appId, serverName or serverSecret")
    if not hmac.compare_digest(expected.encode(), secret.encode()):
        raise bad_auth("unknown appId, serverName or serverSecret")
    return Caller(str(app_id), app)


async def _run(node: Node, caller: Caller, message: object) -> dict[str, Any]:
    """One operation → its response object, success or error."""
    try:
        if not isinstance(message, dict):
            raise invalid("each message must be an object")
        data = await dispatch(
            node, caller, message.get("service"), message.get("operation"), message.get("data")
        )
    except RttError as e:
        return e.body()
    return {"status": 200, "data": data}


def _stored(status: int, body: bytes) -> bytes:
    return b"%03d" % status + body


def _from_store(raw: bytes) -> Response:
    return Response(raw[3:], int(raw[:3]), media_type="application/json")


async def _idempotent(
    node: Node,
    request: Request,
    caller: Caller,
    produce: Callable[[], Awaitable[tuple[int, bytes]]],
) -> Response:
    """Answer a retry with the first response; concurrent retries wait for the first."""
    key = request.headers.get("idempotency-key")
    if key is None:
        status, body = await produce()
        return Response(body, status, media_type="application/json")
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        return json_response(invalid("Idempotency-Key must be 1 to 255 characters").body(), 400)
    store = node.engine.store
    async with _key_locks.hold((caller.app_id, key)):
        stored = await store.recall(caller.app_id, key)
        if stored is not None:
            return _from_store(stored)
        status, body = await produce()
        if status < 500:
            await store.remember(
                caller.app_id, key, _stored(status, body), node.settings.idempotency_seconds
            )
        return Response(body, status, media_type="application/json")


async def s2s_dispatcher(request: Request) -> Response:
    """The endpoint; an unreachable engine answers 503 with Retry-After, having written nothing."""
    try:
        response = await _dispatch(request.app.state.node, request)
    except EngineUnavailable:
        response = json_response(unavailable().body(), 503)
    if response.status_code == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response


async def _dispatch(node: Node, request: Request) -> Response:
    try:
        body = await read_json(request, node.settings.max_body_bytes, node.settings.max_json_depth)
        if not isinstance(body, dict):
            raise invalid("body must be a JSON object")
    except RttError as e:
        return json_response(e.body(), e.status)
    if "messages" in body:
        return await _session_form(node, request, body)
    try:
        caller = _authenticate(node, body)
    except RttError as e:
        return json_response(e.body(), e.status)

    async def produce() -> tuple[int, bytes]:
        response = await _run(node, caller, body)
        return int(response["status"]), dumps(response)

    return await _idempotent(node, request, caller, produce)


def _packet(packet_id: object, responses: list[dict[str, Any]]) -> bytes:
    return dumps({"packetId": packet_id, "messageResponses": responses})


def _packet_error(packet_id: object, count: int, error: RttError) -> Response:
    return Response(
        _packet(packet_id, [error.body()] * count),
        error.status,
        media_type="application/json",
    )


async def _session_form(node: Node, request: Request, body: dict[str, Any]) -> Response:
    """Packets of one session run one at a time, so a retry sent while its first attempt is
    still running waits for it and then answers the cached responses instead of running twice."""
    session_id = body.get("sessionId")
    if not isinstance(session_id, str):
        return await _session_packet(node, request, body)
    async with _session_locks.hold(("", session_id)):
        return await _session_packet(node, request, body)


def _is_packet_id(packet_id: object) -> TypeGuard[int]:
    return (
        isinstance(packet_id, int)
        and not isinstance(packet_id, bool)
        and (0 <= packet_id <= MAX_PACKET_ID)
    )


def _entries(messages: object) -> int:
    """How many entries an error answer for this packet holds: one per message of a packet
    within bounds, a single one for a packet out of them. Counted before anything else, so no
    answer outgrows MAX_PACKET_MESSAGES entries, whatever was sent."""
    if isinstance(messages, list) and 0 < len(messages) <= MAX_PACKET_MESSAGES:
        return len(messages)
    return 1


async def _session_packet(node: Node, request: Request, body: dict[str, Any]) -> Response:
    packet_id, messages = body.get("packetId"), body.get("messages")
    count = _entries(messages)
    session_id = body.get("sessionId")
    try:
        if session_id is None:
            first = messages[0] if isinstance(messages, list) and messages else None
            if (
                not isinstance(first, dict)
                or first.get("service") != "authenticationV2"
                or first.get("operation") != "AUTHENTICATE"
            ):
                raise bad_auth(
                    "a packet without sessionId must start with authenticationV2/AUTHENTICATE"
                )
            caller = _authenticate(node, first.get("data"))
            session = S2SSession(new_id(), caller.app_id, str(first["data"]["serverName"]), 0.0)
        else:
            session = await _live_session(node, session_id)
            caller = Caller(session.app, node.settings.apps[session.app])
        if not _is_packet_id(packet_id):
            raise invalid(f"packetId must be an integer from 0 to {MAX_PACKET_ID}")
        if not isinstance(messages, list) or not 0 < len(messages) <= MAX_PACKET_MESSAGES:
            raise invalid(f"messages must be a list of 1 to {MAX_PACKET_MESSAGES} operations")
    except RttError as e:  # a packetId that is not one is not echoed either
        return _packet_error(packet_id if _is_packet_id(packet_id) else None, count, e)
    if session.last_packet is not None and session.last_response is not None:
        if packet_id == session.last_packet:
            return Response(session.last_response, media_type="application/json")
        if packet_id < session.last_packet:
            return _packet_error(packet_id, count, invalid("packetId is older than the last one"))

    async def produce() -> tuple[int, bytes]:
        responses: list[dict[str, Any]] = []
        operations = messages
        if session_id is None:  # the packet opened the session: answer AUTHENTICATE first
            heartbeat = max(1, int(node.settings.s2s_session_seconds // 2))
            responses.append(
                {
                    "status": 200,
                    "data": {"sessionId": session.session_id, "heartbeatSeconds": heartbeat},
                }
            )
            operations = messages[1:]
        for message in operations:
            responses.append(await _run(node, caller, message))
        raw = _packet(packet_id, responses)
        if any(r["status"] == 503 for r in responses):
            return 503, raw  # not recorded as the last packet: the retry must run again
        session.last_packet, session.last_response = packet_id, raw
        session.expires_at = time.time() + node.settings.s2s_session_seconds
        await node.engine.store.save_s2s_session(session)
        return 200, raw

    return await _idempotent(node, request, caller, produce)


async def _live_session(node: Node, session_id: object) -> S2SSession:
    expired = RttError(403, Reason.S2S_SESSION_EXPIRED, "S2S session expired or unknown")
    if not isinstance(session_id, str) or len(session_id) > 64:
        raise expired
    session = await node.engine.store.get_s2s_session(session_id)
    if session is None or session.expires_at < time.time() or session.app not in node.settings.apps:
        raise expired
    return session
