"""`POST /dispatcherv2`: the brainCloud client API, as the official client libraries speak it.

A packet is `{"messages":[…],"gameId","sessionId","packetId"}` signed with `X-SIG` = hex MD5 of
the body bytes followed by the app's client secret, for the app named by `X-APPID`. The app and
the signature are checked (in constant time) before the body is parsed; a refused packet answers
one brainCloud error object with a non-200 status, which the library hands to every callback of
the packet. An accepted packet answers HTTP 200 `{"packetId","responses":[…]}`, one response per
message, in order.

Sessions: AUTHENTICATE opens one (rtt/core/accounts.py); every packet that names a live session
pushes its expiry to RTT_CLIENT_SESSION_SECONDS from now. A message that needs a session gets
403/40303 when the packet named one that is unknown or expired and 403/40304 when it named none:
the library drops its session on either and the app signs in again.

Exactly once: a packet of a live session is claimed as (sessionId, packetId) before it runs
(rtt/core/claims.py, shared with the S2S door), so the library's resend of a packet whose
answer it lost (the same packetId) gets the recorded answer and nothing runs twice, on whichever
node it lands; a resend while the first still runs waits for it, then answers 503, on which the
library retries. A packet that signs in is claimed by its exact bytes, so a resent sign-in
answers the same session instead of opening a second one.

An app with `features.piggyback_events` adds `"events":[…]` to a session's responses: the
profile's stored events not yet handed to that session (rtt/core/piggyback.py).

Bodies may be gzip (`Content-Encoding: gzip`); the signature may cover either the bytes as sent
or the JSON inside. Bundles are bounded: RTT_DISPATCHER_MAX_MESSAGES messages and
RTT_DISPATCHER_MAX_BYTES bytes (after gzip is undone).
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from rtt.api.http import braincloud_endpoint, json_response, parse_json, read_body
from rtt.api.schemas.braincloud import (
    MAX_SESSION_ID,
    ClientPacket,
    packet_refusal,
    parse_call,
)
from rtt.core.accounts import authenticate, session_caller
from rtt.core.claims import exactly_once
from rtt.core.node import Node
from rtt.core.piggyback import piggybacked_events
from rtt.core.registry import Caller, dispatch
from rtt.engines.base import ClaimState, ClientSession
from rtt.errors import Reason, RttError, invalid, unavailable
from rtt.protocol import dumps
from rtt.settings import AppConfig

AUTHENTICATE = ("authenticationV2", "AUTHENTICATE")


async def client_dispatcher(request: Request) -> Response:
    """The endpoint: 503 with Retry-After while the engine is unreachable (the library
    retries)."""
    return await braincloud_endpoint(request, lambda r: _dispatch(r.app.state.node, r))


def _app(node: Node, app_id: str | None) -> AppConfig:
    app = node.settings.apps.get(app_id) if app_id else None
    if app is None:
        raise RttError(403, Reason.UNKNOWN_APP, "unknown X-APPID")
    return app


def gunzip(raw: bytes, limit: int) -> bytes:
    """The JSON inside a gzip body, refused (413/40600) past `limit` bytes without inflating
    more than that, and 400/40001 when it is not whole gzip."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise invalid("body is not valid gzip") from None
    if len(body) > limit:
        raise RttError(413, Reason.TOO_LARGE, f"packet larger than {limit} bytes")
    if not inflater.eof or inflater.unused_data:
        raise invalid("body is not one whole gzip stream")
    return body


def signed(secret: str, signature: str | None, *bodies: bytes) -> bool:
    """Whether `signature` is hex MD5(body + secret) of one of `bodies`, compared in constant
    time (every body is checked, so the time does not tell which one failed)."""
    given = (signature or "").strip().lower().encode()
    key = secret.encode()
    matches = [
        hmac.compare_digest(hashlib.md5(body + key).hexdigest().encode(), given) for body in bodies
    ]
    return bool(signature) and any(matches)


async def _read(node: Node, request: Request, app: AppConfig) -> bytes:
    """The packet's JSON bytes, once the signature vouches for them."""
    limit = node.settings.dispatcher_max_bytes
    raw = await read_body(request, limit)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    bodies: tuple[bytes, ...]
    if encoding == "gzip":
        body = gunzip(raw, limit)
        bodies = (raw, body)
    elif encoding == "identity":
        body, bodies = raw, (raw,)
    else:
        raise invalid(f"unsupported Content-Encoding {encoding!r}: send gzip or none")
    if not signed(app.secret, request.headers.get("x-sig"), *bodies):
        raise RttError(403, Reason.BAD_SIGNATURE, "X-SIG does not match the packet")
    return body


async def _dispatch(node: Node, request: Request) -> Response:
    settings = node.settings
    try:
        app_id = request.headers.get("x-appid")
        app = _app(node, app_id)
        raw = await _read(node, request, app)
        body = parse_json(raw, settings.max_json_depth)
        packet = _packet(body, settings.dispatcher_max_messages)
    except RttError as e:
        return json_response(e.body(), e.status)
    assert app_id is not None
    packet_id, messages, session_id = packet.packetId, packet.messages, packet.sessionId
    session = await _live_session(node, app_id, session_id)

    async def run() -> tuple[int, bytes]:
        caller = session_caller(app, session) if session is not None else None
        responses = []
        for message in messages:
            caller, response = await _run(node, app_id, app, caller, bool(session_id), message)
            responses.append(response)
        bundle: dict[str, Any] = {"packetId": packet_id, "responses": responses}
        events = await piggybacked_events(node, caller)
        if events:  # recorded with the rest: a resent packet answers the same events
            bundle["events"] = events
        return 200, dumps(bundle)

    if session is not None:
        key = f"c:{session.session_id}:{packet_id}"
    elif _is_authenticate(messages[0]):
        key = "a:" + hashlib.sha256(raw).hexdigest()
    else:  # nothing of it can run: each message answers the session error
        status, answer = await run()
        return Response(answer, status, media_type="application/json")
    result = await exactly_once(node, app_id, key, b"", settings.client_session_seconds, run)
    if isinstance(result, ClaimState):  # PENDING: the fingerprint never differs
        still = unavailable("the first attempt of this packet is still running; retry shortly")
        return json_response(still.body(), 503)
    status, answer = result
    return Response(answer, status, media_type="application/json")


def _packet(body: object, most: int) -> ClientPacket:
    """The packet's envelope, at most `most` messages; each message is checked when it runs."""
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    try:
        packet = ClientPacket.model_validate(body)
    except ValidationError as e:
        raise packet_refusal(e, most) from None
    if len(packet.messages) > most:
        raise invalid(f"messages must be a list of 1 to {most} operations")
    return packet


async def _live_session(node: Node, app_id: str, session_id: object) -> ClientSession | None:
    """The packet's session, its expiry extended; None if it names none that is live."""
    if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_SESSION_ID:
        return None
    session = await node.engine.accounts.touch_session(
        session_id, node.settings.client_session_seconds
    )
    return session if session is not None and session.app == app_id else None


def _is_authenticate(message: object) -> bool:
    return isinstance(message, dict) and (message.get("service"), message.get("operation")) == (
        AUTHENTICATE
    )


async def _run(
    node: Node,
    app_id: str,
    app: AppConfig,
    caller: Caller | None,
    named_session: bool,
    message: object,
) -> tuple[Caller | None, dict[str, Any]]:
    """One message → (the caller for the messages after it, its response). A sign-in
    replaces the caller, so a bundle may sign in and go on in the new session."""
    try:
        call = parse_call(message)
        if (call.service, call.operation) == AUTHENTICATE:
            session, data = await authenticate(node, app_id, app, call.data)
            return session_caller(app, session), {"status": 200, "data": data}
        if caller is None:
            if named_session:
                raise RttError(403, Reason.SESSION_EXPIRED, "session expired or unknown")
            raise RttError(403, Reason.BAD_AUTH, "no session: authenticate first")
        result = await dispatch(node, caller, call.service, call.operation, call.data)
    except RttError as e:
        return caller, e.body()
    return caller, {"status": 200, "data": result}
