"""The RongCloud server API's system channel (API.md §8): `POST /v4/system-channel/message/send`
(JSON) and `POST /message/system/publish.json` (form), so a backend written for RongCloud, or
RongCloud's own server SDK, sends through rtt unchanged.

The signature is checked first, from the headers alone: App-Key, Nonce, Timestamp and
Signature = hex SHA1(appSecret + Nonce + Timestamp) (or their `RC-` names), the Timestamp
(seconds or milliseconds) within `RTT_RONGCLOUD_WINDOW_SECONDS` of the node's clock, and the
(Nonce, Timestamp) pair never seen before on any node. Any failure answers 401
`{"code":1004}` before the body is read. Then the door only translates: its fields to
`system/SYS_SEND_CHANNEL_MESSAGE` (rtt/core/channel.py), the answer back, and an RttError to
RongCloud's code and HTTP status.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rtt.api.http import RETRY_AFTER_SECONDS, json_response, parse_json, read_body
from rtt.api.schemas.rongcloud import ChannelSend, PublishForm, refusal
from rtt.core.node import Node
from rtt.core.registry import Caller, dispatch
from rtt.engines.base import EngineUnavailable, NonceClaim
from rtt.errors import Reason, RttError, invalid, unavailable

SEND = ("system", "SYS_SEND_CHANNEL_MESSAGE")
DIALECT = "rongcloud"
MAX_NONCE = 18
TIMESTAMP = re.compile(r"[0-9]{1,13}")
SIGNATURE = re.compile(r"[0-9a-fA-F]{40}")
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")
MS_FROM = 10**11  # a Timestamp this large counts milliseconds (seconds reach it in year 5138)

OK, PARAMETER, SIGNATURE_ERROR, TOO_LARGE, RATE, NOT_ENABLED, INTERNAL = (
    200, 1002, 1004, 1005, 1008, 1009, 1000,
)  # fmt: skip
# rtt's refusal (reason code) → RongCloud's (HTTP status, code); anything else is 400/1002
_CODES: dict[int, tuple[int, int]] = {
    Reason.TOO_LARGE: (413, TOO_LARGE),
    Reason.RATE_LIMITED: (429, RATE),
    Reason.FEATURE_NOT_ENABLED: (403, NOT_ENABLED),
    Reason.ENGINE_UNAVAILABLE: (503, INTERNAL),
}


class Refused(Exception):
    """A RongCloud error answer: HTTP status, RongCloud code, message."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _header(headers: Headers, name: str) -> str | None:
    return headers.get(name) or headers.get(f"RC-{name}")


def _bad_signature(message: str) -> Refused:
    return Refused(401, SIGNATURE_ERROR, message)


def check_signature(
    apps: Mapping[str, Any], headers: Headers, now: float, window: float
) -> tuple[str, str, float]:
    """(appId, the nonce's cache key, seconds the nonce must be remembered) for a request
    whose headers carry a valid signature; else Refused 401/1004. Reads nothing but headers."""
    app_key, nonce = _header(headers, "App-Key"), _header(headers, "Nonce")
    stamp, signature = _header(headers, "Timestamp"), _header(headers, "Signature")
    if not (app_key and nonce and stamp and signature):
        raise _bad_signature("App-Key, Nonce, Timestamp and Signature are required")
    if len(nonce) > MAX_NONCE or not nonce.isascii() or not nonce.isprintable():
        raise _bad_signature(f"Nonce must be 1 to {MAX_NONCE} printable ASCII characters")
    if not TIMESTAMP.fullmatch(stamp) or not SIGNATURE.fullmatch(signature):
        raise _bad_signature("Timestamp must be digits and Signature 40 hex digits")
    found = [(i, a) for i, a in apps.items() if a.app_key is not None and a.app_key == app_key]
    if not found or found[0][1].app_secret is None:
        raise _bad_signature("unknown App-Key")
    app_id, app = found[0]
    expected = hashlib.sha1((app.app_secret + nonce + stamp).encode()).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise _bad_signature("signature does not match")
    seconds = int(stamp) / 1000 if int(stamp) >= MS_FROM else int(stamp)
    if abs(now - seconds) > window:
        raise _bad_signature("Timestamp is outside the allowed window")
    # past `seconds + window` the Timestamp itself is refused: the nonce need not be kept longer
    return app_id, f"{nonce}:{stamp}", seconds + window - now + 1


async def _authenticate(node: Node, headers: Headers) -> Caller:
    settings = node.settings
    window = settings.rongcloud_window_seconds
    app_id, key, ttl = check_signature(settings.apps, headers, time.time(), window)
    claim = await node.engine.channel.claim_nonce(app_id, key, ttl, settings.rongcloud_max_nonces)
    if claim is NonceClaim.REPLAYED:
        raise _bad_signature("Nonce was already used")
    if claim is NonceClaim.FULL:
        node.metrics.rate_limited(DIALECT)
        raise Refused(429, RATE, "too many requests within the signature window")
    return Caller(app_id, settings.apps[app_id], door=DIALECT)


def _refusal(error: RttError) -> Refused:
    status, code = _CODES.get(error.reason_code, (400, PARAMETER))
    return Refused(status, code, error.message)


def _request_id(headers: Headers) -> str:
    given = headers.get("X-Request-ID")
    return given if given and REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


async def _answer(request: Request, form: bool) -> Response:
    node: Node = request.app.state.node
    headers = {"X-Request-ID": _request_id(request.headers)}
    try:
        try:
            caller = await _authenticate(node, request.headers)
            raw = await read_body(request, node.settings.max_body_bytes)
            data = _form_fields(raw, caller) if form else _json_fields(raw, node)
            result = await dispatch(node, caller, *SEND, data)
        except EngineUnavailable:
            raise _refusal(unavailable()) from None
        except RttError as e:
            raise _refusal(e) from None
    except Refused as e:
        if e.status == 503:
            headers["Retry-After"] = RETRY_AFTER_SECONDS
        return json_response({"code": e.code, "errorMessage": e.message}, e.status, headers)
    if form:
        return json_response({"code": OK}, 200, headers)
    assert result is not None  # the send operation always answers an object
    answer = {"code": 0, "result": {"messageUIDs": result["messageUIDs"]}}
    return json_response(answer, 200, headers)


def _json_fields(raw: bytes, node: Node) -> dict[str, Any]:
    """The v4 body is the core's own shape: a JSON object of the same field names."""
    body = parse_json(raw, node.settings.max_json_depth)
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    try:
        ChannelSend.model_validate(body)
    except ValidationError as e:
        raise refusal(e) from None
    return body


# publish.json's form names → the core's fields
_FORM_NAMES = {
    "fromUserId": "fromUserId",
    "objectName": "messageType",
    "content": "content",
    "pushContent": "pushContent",
    "pushData": "pushData",
    "pushExt": "pushExt",
    "isPersisted": "shouldPersist",
    "isCounted": "isCounted",
    "contentAvailable": "contentAvailable",
    "disablePush": "disablePush",
}
_NUMBERS = {"shouldPersist", "isCounted", "contentAvailable"}
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


def _form_fields(raw: bytes, caller: Caller) -> dict[str, Any]:
    """publish.json's form → the core's fields: repeated `toUserId` → `toUserIds`,
    `objectName` → `messageType`, `isPersisted` → `shouldPersist`; numbers and booleans from
    their text (`True`, as RongCloud's Python SDK writes it, included). A field given twice,
    or text that is not what it should be, answers 1002."""
    limit = caller.app.limits.max_recipients_rongcloud + 2 * len(_FORM_NAMES)
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=limit)
    except (UnicodeDecodeError, ValueError):
        raise invalid("body is not a form of at most the allowed fields") from None
    given: dict[str, Any] = {"toUserId": []}
    for name, value in pairs:
        if name == "toUserId":
            given["toUserId"].append(value)
        elif name in _FORM_NAMES:
            if name in given:
                raise invalid(f"{name} is given more than once")
            given[name] = value
    try:
        form = PublishForm.model_validate(given)
    except ValidationError as e:
        raise refusal(e) from None
    data: dict[str, Any] = {"toUserIds": form.toUserId}
    for name, field in _FORM_NAMES.items():
        text: str | None = getattr(form, name)
        if text is None:
            continue
        if field in _NUMBERS:
            data[field] = int(text)
        elif field == "disablePush":
            data[field] = _BOOLEANS[text.lower()]
        else:
            data[field] = text
    return data


async def system_channel_send(request: Request) -> Response:
    """`POST /v4/system-channel/message/send` (JSON) → `{"code":0,"result":{"messageUIDs"}}`."""
    return await _answer(request, form=False)


async def system_publish(request: Request) -> Response:
    """`POST /message/system/publish.json` (form) → `{"code":200}`."""
    return await _answer(request, form=True)


ROUTES = [
    Route("/v4/system-channel/message/send", system_channel_send, methods=["POST"]),
    Route("/message/system/publish.json", system_publish, methods=["POST"]),
]
