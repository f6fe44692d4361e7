"""`/admin`: a small page for operators, behind HTTP Basic with an app's API user holding the
`admin` role (`[apps.X.users.NAME]`, checked by rtt/api/nexudus_auth.py, read on every request).

The page is static (rtt/admin/: HTML, CSS and vanilla JS, no build step) and polls three JSON
endpoints of its own: the node's live counts (from its metrics), the admin's app's push outbox
(its depth and a page of entries through `push/SYS_GET_PENDING`), and a send of a system
message through `messaging/SYS_SEND_MESSAGE`, as the app's server. Everything an admin does goes
through the core registry like any other door (counted as dialect `admin`).

The browser sends the Basic credentials by itself, so the one endpoint that changes anything
(the send) accepts only a JSON body from the page's own origin: a form on another site cannot
post it (a cross-site JSON POST needs a preflight the node never answers).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rtt.api import nexudus_auth
from rtt.api.http import json_response, parse_json, read_body
from rtt.api.metrics import outbox_depths
from rtt.core.node import Node, now_ms
from rtt.core.registry import Caller, dispatch
from rtt.domain import fields
from rtt.errors import Reason, RttError, invalid

DIALECT = "admin"
PAGE = 20  # push outbox entries per page
REALM = 'Basic realm="rtt admin", charset="UTF-8"'
_STATIC = {  # file → content type; served from the package, read once
    "index.html": "text/html; charset=utf-8",
    "admin.js": "text/javascript; charset=utf-8",
    "admin.css": "text/css; charset=utf-8",
}
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
_files: dict[str, bytes] = {}


class _Denied(Exception):
    pass


def _admin(request: Request) -> nexudus_auth.ApiCaller:
    """The app's API user these Basic credentials prove, if it holds `admin`; else _Denied."""
    node: Node = request.app.state.node
    authorization = request.headers.get("authorization", "")
    if authorization[:6].lower() != "basic ":
        raise _Denied
    caller = nexudus_auth.by_header(node.settings.apps, authorization)
    if caller is None or nexudus_auth.ADMIN not in caller.user.roles:
        raise _Denied
    return caller


def _denied() -> Response:
    error = RttError(401, Reason.BAD_AUTH, "an API user with the admin role is required")
    return json_response(error.body(), 401, {"WWW-Authenticate": REALM})


def _file(name: str) -> bytes:
    if name not in _files:
        _files[name] = (resources.files("rtt") / "admin" / name).read_bytes()
    return _files[name]


async def page(request: Request) -> Response:
    """`/admin` (the page) and `/admin/<file>` (its script and style)."""
    try:
        _admin(request)
    except _Denied:
        return _denied()
    name = request.path_params.get("name", "index.html")
    if name not in _STATIC:
        return json_response(invalid("no such file").body(), 404)
    return Response(_file(name), media_type=_STATIC[name], headers=_PAGE_HEADERS)


def _stats(node: Node, caller: nexudus_auth.ApiCaller) -> dict[str, Any]:
    """The node's live counts, from its metrics (None while metrics are off); the page turns
    two answers into rates."""
    metrics = node.metrics

    def count(name: str) -> int | None:
        return int(metrics.value(name)) if metrics.enabled else None

    return {
        "app": caller.app_id,
        "user": caller.username,
        "metrics": metrics.enabled,
        "at": now_ms(),
        "connections": count("rtt_connections"),
        "sends": count("rtt_sends_total"),
        "deliveries": count("rtt_deliveries_total"),
    }


async def _outbox(node: Node, server: Caller, context: str | None) -> dict[str, Any]:
    """The app's outbox depth and one page of its entries, oldest first."""
    data = {"limit": PAGE, "context": context}
    page = await dispatch(node, server, "push", "SYS_GET_PENDING", data) or {}
    return {"depth": (await outbox_depths(node)).get(server.app_id), **page}


async def _send(request: Request, node: Node, server: Caller, sender: str) -> dict[str, Any]:
    """A system message with `text` to `toProfileIds`, from the admin's name."""
    _same_origin(request)
    raw = await read_body(request, node.settings.max_body_bytes)
    body = parse_json(raw, node.settings.max_json_depth)
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    text = fields.string(body, "text", max_length=server.app.limits.max_content_bytes)
    data = {
        "toProfileIds": body.get("toProfileIds"),
        "contentJson": {"text": text},
        "fromJson": {"id": None, "name": sender},
    }
    return await dispatch(node, server, "messaging", "SYS_SEND_MESSAGE", data) or {}


async def _answer(request: Request, caller: nexudus_auth.ApiCaller) -> dict[str, Any]:
    node: Node = request.app.state.node
    server = Caller(caller.app_id, caller.app, door=DIALECT)
    kind, method = request.path_params["kind"], request.method
    if kind == "stats" and method == "GET":
        return _stats(node, caller)
    if kind == "outbox" and method == "GET":
        return await _outbox(node, server, request.query_params.get("context"))
    if kind == "send" and method == "POST":
        return await _send(request, node, server, caller.username)
    raise RttError(404, Reason.INVALID_REQUEST, f"no {method} /admin/api/{kind}")


def _same_origin(request: Request) -> None:
    """A send comes from the admin page: JSON, and from the node's own origin if it says one."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise invalid("Content-Type must be application/json")
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise RttError(403, Reason.BAD_AUTH, "cross-origin request refused")


async def api(request: Request) -> Response:
    """`/admin/api/stats`, `/admin/api/outbox` (GET) and `/admin/api/send` (POST)."""
    try:
        caller = _admin(request)
    except _Denied:
        return _denied()
    try:
        answer = await _answer(request, caller)
    except RttError as e:
        return json_response(e.body(), e.status, {"Retry-After": "1"} if e.status == 503 else None)
    return json_response(answer, 200, {"Cache-Control": "no-store"})


ROUTES = [
    Route("/admin", page, methods=["GET"]),
    Route("/admin/api/{kind}", api, methods=["GET", "POST"]),
    Route("/admin/{name}", page, methods=["GET"]),
]
