"""`POST /s2sdispatcher`: the brainCloud server-to-server envelope, stateless and session forms.

Credentials are checked before any other field is read. Exactly once, on every node: an
`Idempotency-Key` and a session's (sessionId, packetId) are each claimed in the engine before
anything runs (rtt/core/claims.py, shared with the client dispatcher), and the first attempt's
response is recorded under the claim. A duplicate, wherever it lands, answers that response and
runs nothing; one that arrives while the first still runs waits for it (polling, at most
`idempotency_wait_seconds`, then 503 + Retry-After). The same key with another request (app,
server name or body bytes) answers 409 and runs nothing. A holder renews its claim while it runs;
one whose node died frees it after `idempotency_claim_seconds`, so a retry then runs.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeGuard

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from rtt.api.http import braincloud_endpoint, json_response, parse_json, read_body
from rtt.api.schemas.braincloud import (
    MAX_PACKET_ID,
    MAX_PACKET_MESSAGES,
    MAX_SESSION_ID,
    S2SPacket,
    credentials,
    packet_refusal,
    parse_call,
)
from rtt.core.claims import exactly_once
from rtt.core.node import Node
from rtt.core.registry import Caller, dispatch
from rtt.domain.messages import new_id
from rtt.engines.base import ClaimState, S2SSession
from rtt.errors import Reason, RttError, bad_auth, invalid, unavailable
from rtt.protocol import dumps

MAX_IDEMPOTENCY_KEY = 255


KEY_PREFIX = "k:"  # Idempotency-Keys; session packets are claimed as "p:<sessionId>:<packetId>"


def _authenticate(node: Node, fields: object) -> Caller:
    """The app's server credentials, compared in constant time; 403/40304 otherwise."""
    given = credentials(fields)
    app = node.settings.apps.get(given.appId)
    expected = app.servers.get(given.serverName) if app else None
    if app is None or expected is None:
        raise bad_auth("unknown appId, serverName or serverSecret")
    if not hmac.compare_digest(expected.encode(), given.serverSecret.encode()):
        raise bad_auth("unknown appId, serverName or serverSecret")
    return Caller(given.appId, app)


async def _run(node: Node, caller: Caller, message: object) -> dict[str, Any]:
    """One operation → its response object, success or error."""
    try:
        call = parse_call(message)
        data = await dispatch(node, caller, call.service, call.operation, call.data)
    except RttError as e:
        return e.body()
    return {"status": 200, "data": data}


def fingerprint(app: str, server: str, body: bytes) -> bytes:
    """What an Idempotency-Key is bound to: the app, the calling server and the exact body."""
    return hashlib.sha256(dumps([app, server]) + body).digest()


def _still_running() -> RttError:
    return unavailable("the first attempt of this request is still running; retry shortly")


async def _idempotent(
    node: Node,
    request: Request,
    identity: tuple[str, str, bytes],
    produce: Callable[[], Awaitable[tuple[int, bytes]]],
) -> Response:
    """Answer every request bearing one Idempotency-Key with the first one's response.
    `identity` is (app, server name, exact body bytes), bound to the key by `fingerprint`."""
    key = request.headers.get("idempotency-key")
    if key is None:
        status, body = await produce()
        return Response(body, status, media_type="application/json")
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        return json_response(invalid("Idempotency-Key must be 1 to 255 characters").body(), 400)
    app = identity[0]
    result = await exactly_once(
        node,
        app,
        KEY_PREFIX + key,
        fingerprint(*identity),
        node.settings.idempotency_seconds,
        produce,
    )
    if result is ClaimState.CONFLICT:
        error = RttError(
            409, Reason.INVALID_REQUEST, "Idempotency-Key was used for another request"
        )
        return json_response(error.body(), 409)
    if isinstance(result, ClaimState):
        return json_response(_still_running().body(), 503)
    status, body = result
    return Response(body, status, media_type="application/json")


async def s2s_dispatcher(request: Request) -> Response:
    """The endpoint: 503 with Retry-After while the engine is unreachable, having written
    nothing."""
    return await braincloud_endpoint(request, lambda r: _dispatch(r.app.state.node, r))


async def _dispatch(node: Node, request: Request) -> Response:
    try:
        raw = await read_body(request, node.settings.max_body_bytes)
        body = parse_json(raw, node.settings.max_json_depth)
        if not isinstance(body, dict):
            raise invalid("body must be a JSON object")
    except RttError as e:
        return json_response(e.body(), e.status)
    if "messages" in body:
        return await _session_packet(node, request, raw, body)
    try:
        caller = _authenticate(node, body)
    except RttError as e:
        return json_response(e.body(), e.status)

    async def produce() -> tuple[int, bytes]:
        response = await _run(node, caller, body)
        return int(response["status"]), dumps(response)

    return await _idempotent(node, request, (caller.app_id, body["serverName"], raw), produce)


def _packet(packet_id: object, responses: list[dict[str, Any]]) -> bytes:
    return dumps({"packetId": packet_id, "messageResponses": responses})


def _packet_error(packet_id: object, count: int, error: RttError) -> Response:
    return Response(
        _packet(packet_id, [error.body()] * count),
        error.status,
        media_type="application/json",
    )


def is_packet_id(packet_id: object) -> TypeGuard[int]:
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


async def _session_packet(
    node: Node, request: Request, raw_body: bytes, body: dict[str, Any]
) -> Response:
    """One packet of a session, run at most once: its (sessionId, packetId) is claimed in the
    engine, so a resend that lands on any node while the first attempt runs waits for it, and
    its response is recorded whole (per-operation errors, 503 included), so a resend later
    answers it instead of running anything again."""
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
        packet = _packet_model(body)
    except RttError as e:  # a packetId that is not one is not echoed either
        return _packet_error(packet_id if is_packet_id(packet_id) else None, count, e)
    packet_id, messages = packet.packetId, packet.messages
    if session.last_packet is not None and packet_id < session.last_packet:
        return _packet_error(packet_id, count, invalid("packetId is older than the last one"))

    async def run() -> tuple[int, bytes]:
        responses: list[dict[str, Any]] = []
        operations: list[object] = list(messages)
        if session_id is None:  # the packet opened the session: answer AUTHENTICATE first
            heartbeat = max(1, int(node.settings.s2s_session_seconds // 2))
            responses.append(
                {
                    "status": 200,
                    "data": {"sessionId": session.session_id, "heartbeatSeconds": heartbeat},
                }
            )
            operations = operations[1:]
        for message in operations:
            responses.append(await _run(node, caller, message))
        raw = _packet(packet_id, responses)
        session.last_packet = packet_id
        session.expires_at = time.time() + node.settings.s2s_session_seconds
        await node.engine.store.save_s2s_session(session)
        return 200, raw

    async def produce() -> tuple[int, bytes]:
        # a new session's packet is claimed too: the claim keeps its answer for a resend
        result = await exactly_once(
            node,
            session.app,
            f"p:{session.session_id}:{packet_id}",
            b"",  # the packetId alone names a resend (API.md §2)
            node.settings.s2s_session_seconds,
            run,
        )
        if isinstance(result, ClaimState):  # PENDING: the fingerprint never differs
            return 503, _packet(packet_id, [_still_running().body()] * count)
        return result

    return await _idempotent(node, request, (session.app, session.server, raw_body), produce)


def _packet_model(body: dict[str, Any]) -> S2SPacket:
    """The packet's envelope; its messages are each checked when they run (`_run`)."""
    try:
        return S2SPacket.model_validate(body)
    except ValidationError as e:
        raise packet_refusal(e, MAX_PACKET_MESSAGES) from None


async def _live_session(node: Node, session_id: object) -> S2SSession:
    expired = RttError(403, Reason.S2S_SESSION_EXPIRED, "S2S session expired or unknown")
    if not isinstance(session_id, str) or len(session_id) > MAX_SESSION_ID:
        raise expired
    session = await node.engine.store.get_s2s_session(session_id)
    if session is None or session.expires_at < time.time() or session.app not in node.settings.apps:
        raise expired
    return session
