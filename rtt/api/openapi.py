"""`GET /openapi.json` and `GET /docs`: every HTTP route of every dialect, described from the
pydantic models its door validates with (rtt/api/schemas/), so the document is what a node
accepts and answers, not a second copy of it.

The document is OpenAPI 3.1 (its schemas are JSON Schema 2020-12, what pydantic writes) and is
built once per process. `/docs` is one static page shipped in the package (rtt/api/docs.html)
that renders the document in the browser with no script, style or font from elsewhere, so it
works on a node with no internet access.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from rtt import __version__
from rtt.api.http import json_response
from rtt.api.schemas import braincloud as bc
from rtt.api.schemas import nexudus as nx
from rtt.api.schemas import rongcloud as rc
from rtt.api.schemas.health import Health, Status

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
REF = "#/components/schemas/{model}"

Models = tuple[type[BaseModel], ...]


@dataclass(frozen=True)
class Op:
    """One operation: its request body (media type and the models it may be), parameters,
    and the models each status answers with."""

    method: str
    path: str
    tag: str
    summary: str
    responses: dict[int, Models]
    body: Models = ()
    media: str = JSON
    parameters: list[dict[str, Any]] = field(default_factory=list)
    security: list[dict[str, list[str]]] | None = None


def _header(name: str, description: str, *, required: bool = True, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


IDEMPOTENCY = _header(
    "Idempotency-Key",
    "A retry with the same key within RTT_IDEMPOTENCY_SECONDS answers the first response and"
    " runs nothing; the same key with another body answers 409.",
    required=False,
    minLength=1,
    maxLength=255,
)
RONGCLOUD_SIGNATURE = [
    _header("App-Key", "The app's `app_key` (also as `RC-App-Key`)."),
    _header("Nonce", "At most 18 printable characters, never reused.", minLength=1, maxLength=18),
    _header("Timestamp", "Seconds or milliseconds since the epoch.", pattern="^[0-9]{1,13}$"),
    _header("Signature", "Hex SHA1(appSecret + Nonce + Timestamp).", pattern="^[0-9a-fA-F]{40}$"),
    _header("X-Request-ID", "Echoed back (one is made when absent).", required=False),
]
RECORD_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": nx.MAX_USER_ID},
}
NEXUDUS_AUTH: list[dict[str, list[str]]] = [{"nexudusBearer": []}, {"nexudusBasic": []}]
BRAINCLOUD_ERRORS: dict[int, Models] = {s: (bc.ErrorBody,) for s in (400, 403, 413, 503)}
RONGCLOUD_ERRORS: dict[int, Models] = {
    s: (rc.RongCloudError,) for s in (400, 401, 403, 413, 429, 503)
}
NEXUDUS_ERRORS: dict[int, Models] = {
    400: (nx.Invalid,),
    401: (nx.Denied,),
    **{s: (nx.Failed,) for s in (403, 404, 413, 429, 503)},
}
S2S_ANSWERS = (bc.OperationResult, bc.ErrorBody, bc.S2SPacketAnswer)

OPERATIONS = [
    Op(
        "post", "/s2sdispatcher", "brainCloud",
        "Server-to-server: one operation (stateless) or a session's packet",
        {200: (bc.OperationResult, bc.S2SPacketAnswer),
         **{s: S2S_ANSWERS for s in (202, 400, 403, 404, 409, 413, 429, 503)}},
        body=(bc.S2SRequest, bc.S2SPacket),
        parameters=[IDEMPOTENCY],
    ),
    Op(
        "post", "/dispatcherv2", "brainCloud",
        "Client API: a signed packet of operations",
        {200: (bc.ClientPacketAnswer,), **BRAINCLOUD_ERRORS},
        body=(bc.ClientPacket,),
        parameters=[
            _header("X-APPID", "The app."),
            _header("X-SIG", "Hex MD5(body bytes + the app's secret)."),
            _header("Content-Encoding", "gzip or none.", required=False, enum=["gzip", "identity"]),
        ],
    ),
    Op(
        "post", "/v4/system-channel/message/send", "RongCloud",
        "System channel: send one message (JSON)",
        {200: (rc.SendAnswer,), **RONGCLOUD_ERRORS},
        body=(rc.ChannelSend,),
        parameters=RONGCLOUD_SIGNATURE,
    ),
    Op(
        "post", "/message/system/publish.json", "RongCloud",
        "System channel: send one message (form)",
        {200: (rc.PublishAnswer,), **RONGCLOUD_ERRORS},
        body=(rc.PublishForm,),
        media=FORM,
        parameters=RONGCLOUD_SIGNATURE,
    ),
    Op(
        "post", "/api/token", "Nexudus", "A bearer token for an API user",
        {200: (nx.TokenAnswer,), 400: (nx.TokenError,)},
        body=(nx.TokenForm,),
        media=FORM,
    ),
    Op(
        "get", "/api/sys/chatusermessages", "Nexudus", "A page of chat user messages",
        {200: (nx.RecordPage,), **NEXUDUS_ERRORS},
        parameters=[
            _query("page", "From 1.", type="integer", minimum=1, maximum=10**9, default=1),
            _query("size", "Records per page.", type="integer", minimum=1, maximum=100, default=25),
            _query("orderBy", "The order.", type="string", enum=["Id", "CreatedOn", "UpdatedOn"]),
            _query("dir", "1 ascending, -1 descending.", type="string", enum=["1", "-1"]),
        ],
        security=NEXUDUS_AUTH,
    ),
    Op(
        "post", "/api/sys/chatusermessages", "Nexudus", "Create a chat user message",
        {200: (nx.Done,), **NEXUDUS_ERRORS},
        body=(nx.ChatUserMessageCreate,),
        security=NEXUDUS_AUTH,
    ),
    Op(
        "put", "/api/sys/chatusermessages", "Nexudus", "Update a message (Id in the body)",
        {200: (nx.Done,), **NEXUDUS_ERRORS},
        body=(nx.ChatUserMessageUpdate,),
        security=NEXUDUS_AUTH,
    ),
    Op(
        "get", "/api/sys/chatusermessages/{id}", "Nexudus", "One chat user message",
        {200: (nx.ChatUserMessage,), **NEXUDUS_ERRORS},
        parameters=[RECORD_ID],
        security=NEXUDUS_AUTH,
    ),
    Op(
        "put", "/api/sys/chatusermessages/{id}", "Nexudus", "Update a chat user message",
        {200: (nx.Done,), **NEXUDUS_ERRORS},
        body=(nx.ChatUserMessageCreate,),
        parameters=[RECORD_ID],
        security=NEXUDUS_AUTH,
    ),
    Op(
        "delete", "/api/sys/chatusermessages/{id}", "Nexudus", "Delete a chat user message",
        {200: (nx.Done,), **NEXUDUS_ERRORS},
        parameters=[RECORD_ID],
        security=NEXUDUS_AUTH,
    ),
    Op("get", "/healthz", "Operations", "The process answers", {200: (Health,)}),
    Op("get", "/readyz", "Operations", "The engine answers", {200: (Health,), 503: (Health,)}),
    Op("get", "/status", "Operations", "This node's totals", {200: (Status,), 503: (Status,)}),
]  # fmt: skip
# Routes whose answers are no pydantic model, described by hand: the document and its page,
# the Prometheus text, and the admin page (HTML, its static files and its small JSON API).
ADMIN = "Admin (HTTP Basic, an API user with the `admin` role)"
ADMIN_ERRORS: dict[int, Models] = {s: (bc.ErrorBody,) for s in (400, 401, 403, 404, 413, 503)}
BY_HAND: list[tuple[str, str, str, str, str, str, dict[int, Models]]] = [
    ("get", "/openapi.json", "Operations", "This document.", JSON, "object", {}),
    ("get", "/docs", "Operations", "A page rendering this document.", "text/html", "string", {}),
    ("get", "/metrics", "Operations", "Prometheus metrics (404 with RTT_METRICS=false).",
     "text/plain", "string", {404: (bc.ErrorBody,)}),
    ("get", "/admin", ADMIN, "The admin page.", "text/html", "string", ADMIN_ERRORS),
    ("get", "/admin/{name}", ADMIN, "The admin page's script and style.", "text/plain", "string",
     ADMIN_ERRORS),
    ("get", "/admin/api/{kind}", ADMIN, "`stats` (live counts) or `outbox` (a page of it).",
     JSON, "object", ADMIN_ERRORS),
    ("post", "/admin/api/{kind}", ADMIN, "`send`: a system message to profiles.", JSON, "object",
     ADMIN_ERRORS),
]  # fmt: skip


def _content(
    media: str, models: Models, refs: dict[type[BaseModel], dict[str, Any]]
) -> dict[str, Any]:
    schemas = [refs[m] for m in models]
    return {media: {"schema": schemas[0] if len(schemas) == 1 else {"anyOf": schemas}}}


def _operation(op: Op, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": f"{op.method}{op.path}".replace("/", "_").strip("_"),
        "responses": {
            str(status): {
                "description": " or ".join(m.__name__ for m in models),
                "content": _content(JSON, models, refs),
            }
            for status, models in op.responses.items()
        },
    }
    if op.body:
        answer["requestBody"] = {"required": True, "content": _content(op.media, op.body, refs)}
    if op.parameters:
        answer["parameters"] = op.parameters
    if op.security is not None:
        answer["security"] = op.security
    return answer


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document, built from the models once."""
    used = {m for op in OPERATIONS for ms in (op.body, *op.responses.values()) for m in ms}
    models = sorted(used, key=lambda m: m.__name__)
    keys, definitions = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    refs = {m: keys[(m, "validation")] for m in models}
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    for method, path, tag, summary, media, kind, errors in BY_HAND:
        answer = {"description": summary, "content": {media: {"schema": {"type": kind}}}}
        described: dict[str, Any] = {
            "tags": [tag],
            "summary": summary,
            "operationId": f"{method}{path}".replace("/", "_").strip("_"),
            "responses": {
                "200": answer,
                **{
                    str(status): {"description": "ErrorBody", "content": _content(JSON, m, refs)}
                    for status, m in errors.items()
                },
            },
        }
        if "{" in path:
            name = path[path.index("{") + 1 : path.index("}")]
            described["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            ]
        paths.setdefault(path, {})[method] = described
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "rtt",
            "version": __version__,
            "description": "Real-time system messaging: brainCloud's S2S and client APIs,"
            " RongCloud's system channel and Nexudus' chat user messages. WebSocket clients"
            " use `/rtt` (API.md §4), which is not HTTP and not described here.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "nexudusBearer": {"type": "http", "scheme": "bearer"},
                "nexudusBasic": {"type": "http", "scheme": "basic"},
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return json_response(document())


@functools.cache
def _page() -> bytes:
    return resources.files("rtt.api").joinpath("docs.html").read_bytes()


async def docs(request: Request) -> Response:
    return HTMLResponse(_page())
