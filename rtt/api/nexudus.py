"""The Nexudus door (API.md §9): `POST /api/token` and `/api/sys/chatusermessages`, translated
onto the core's `chatUserMessages` operations (rtt/core/chat_user_messages.py) and back.

A record is a message: `FromUserId` and `ToUsers` are profiles whose ids are the integers'
decimal strings, `ChatText` and `Delievered` (Nexudus' spelling) live in its content as
`{"text", "delievered"}`, `Id` is the message's number. Who calls is checked first, from the
`Authorization` header alone (401 otherwise); then the role the method needs; only then is
anything else of the request read. Shapes are checked here, every property at once, so a 400
lists each mistake; the core's rules (limits, sizes) answer in the same 400 shape.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from rtt.api import nexudus_auth
from rtt.api.http import json_response, parse_json, read_body
from rtt.api.nexudus_auth import ApiCaller
from rtt.api.schemas import failed_fields
from rtt.api.schemas.nexudus import (
    MAX_USER_ID,
    ChatUserMessageCreate,
    ChatUserMessageUpdate,
    PropertyError,
    TokenForm,
    property_errors,
)
from rtt.core.chat_user_messages import SERVICE, Unchangeable
from rtt.core.node import Node, now_ms
from rtt.core.registry import Caller, dispatch
from rtt.errors import Reason, RttError
from rtt.protocol import dumps, loads

RECORD = "ChatUserMessage"
MAX_FORM_BYTES = 16 * 1024
ORDERS = {
    "id": ("Id", "id"),
    "createdon": ("CreatedOn", "msgCr"),
    "updatedon": ("UpdatedOn", "msgUp"),
}
DIRECTIONS = {"1": 1, "0": 1, "ascending": 1, "-1": -1, "descending": -1}
LIST_PARAMETERS = {"page", "size", "orderby", "dir"}
# the core's request fields, as the properties a Nexudus caller knows them by
PROPERTIES = {"fromProfileId": "FromUserId", "toProfileIds": "ToUsers", "contentJson": "ChatText"}


class _Answer(Exception):
    """A refusal, already in the Nexudus shape."""

    def __init__(self, response: Response) -> None:
        self.response = response


def _denied() -> _Answer:
    body = {"Message": "Authorization has been denied for this request."}
    return _Answer(json_response(body, 401, {"WWW-Authenticate": 'Bearer, Basic realm="rtt"'}))


def _failed(status: int, message: str, headers: dict[str, str] | None = None) -> _Answer:
    body = {"Status": status, "Message": message, "Value": None, "Errors": None}
    return _Answer(json_response(body | {"WasSuccessful": False}, status, headers))


def _invalid(errors: list[PropertyError]) -> _Answer:
    """400 with one entry per property error, as Nexudus' validation answers."""
    return _Answer(
        json_response(
            {
                "Message": "\n".join(f"{name}: {message}" for name, _, message in errors),
                "Value": None,
                "Errors": [
                    {"AttemptedValue": value, "Message": message, "PropertyName": name}
                    for name, value, message in errors
                ],
                "WasSuccessful": False,
            },
            400,
        )
    )


def _core_error(error: RttError) -> _Answer:
    """A core refusal in the Nexudus shape."""
    if isinstance(error, Unchangeable):
        return _invalid([(PROPERTIES[error.field], None, "cannot be changed once sent")])
    if error.reason_code == Reason.TOO_MANY_RECIPIENTS:
        return _invalid([("ToUsers", None, "holds more users than the app allows in one send")])
    if error.reason_code == Reason.TOO_LARGE and error.status == 400:
        return _invalid([("ChatText", None, "makes the message larger than the app allows")])
    if error.reason_code == Reason.MESSAGE_NOT_FOUND:
        return _failed(404, f"{RECORD} not found.")
    if error.status >= 500:
        return _failed(error.status, error.message, {"Retry-After": "1"})
    return _failed(error.status, error.message)


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _authorize(request: Request, role: str) -> ApiCaller:
    """The caller, if its Authorization header proves a user holding `role` (else 401)."""
    caller = nexudus_auth.by_header(
        _node(request).settings.apps, request.headers.get("authorization")
    )
    if caller is None or not caller.may(f"{RECORD}-{role}"):
        raise _denied()
    return caller


async def _run(request: Request, caller: ApiCaller, operation: str, data: dict[str, Any]) -> Any:
    try:
        return await dispatch(
            _node(request),
            Caller(caller.app_id, caller.app, door="nexudus"),
            SERVICE,
            operation,
            data,
        )
    except RttError as e:
        raise _core_error(e) from None


def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _user_id(profile: object) -> int | None:
    """A profile id as a Nexudus user id: the integer whose decimal string it is (API.md §1),
    else None ("007" is another profile than "7")."""
    if isinstance(profile, str) and profile.isascii() and profile.isdigit() and len(profile) < 19:
        number = int(profile)
        return number if str(number) == profile else None
    return None


def _unique_id(msg_id: str) -> str:
    try:
        return str(uuid.UUID(hex=msg_id))
    except ValueError:
        return msg_id


def _record(item: dict[str, Any]) -> dict[str, Any]:
    """A core item (API.md §3's Sys view plus its number) as a ChatUserMessage record. Ids
    that are not decimal integers (profiles from other dialects) have no Nexudus form: a
    non-integer sender is null and such recipients are left out of ToUsers."""
    message = item["message"]
    content = loads(dumps(message["content"]))
    text = content.get("text") if isinstance(content, dict) else None
    delivered = content.get("delievered") if isinstance(content, dict) else None
    to = [n for n in (_user_id(p) for p in message["to"]) if n is not None]
    return {
        "FromUserId": _user_id(message["from"].get("id")),
        "ToUsers": to,
        "ChatText": text if isinstance(text, str) else None,
        "Delievered": delivered if isinstance(delivered, bool) else False,
        "Id": item["id"],
        "UniqueId": _unique_id(item["msgId"]),
        "CreatedOn": _iso(item["msgCr"]),
        "UpdatedOn": _iso(item["msgUp"]),
        "UpdatedBy": None,
        "IsNew": False,
        "SystemId": None,
    }


def _done(caller: ApiCaller, message: str, value: Any) -> Response:
    """The success envelope of a create, update or delete, every field the seed shows."""
    return json_response(
        {
            "Status": 200,
            "Message": f"{RECORD} was successfully {message}.",
            "Value": value,
            "OpenInDialog": False,
            "OpenInWindow": False,
            "RedirectURL": None,
            "JavaScript": None,
            "UpdatedOn": _iso(now_ms()),
            "UpdatedBy": caller.username,
            "Errors": None,
            "WasSuccessful": True,
        }
    )


# --- request shapes -------------------------------------------------------------------------


def _record_request(body: object, with_id: bool) -> dict[str, Any]:
    """A create (or, `with_id`, update) body → the core's request fields; else 400 listing
    every property error."""
    if not isinstance(body, dict):
        raise _invalid([("", None, "the body must be a JSON object")])
    model = ChatUserMessageUpdate if with_id else ChatUserMessageCreate
    try:
        record = model.model_validate(body)
    except ValidationError as e:
        raise _invalid(property_errors(e, body)) from None
    data: dict[str, Any] = {"fromProfileId": str(record.FromUserId)}
    if isinstance(record, ChatUserMessageUpdate):
        data["id"] = record.Id
    if record.ToUsers is not None:
        data["toProfileIds"] = [str(u) for u in record.ToUsers]
    content: dict[str, Any] = {}
    if record.ChatText is not None:
        content["text"] = record.ChatText
    if record.Delievered is not None:
        content["delievered"] = record.Delievered
    data["contentJson"] = content
    return data


async def _json_body(request: Request) -> object:
    settings = _node(request).settings
    try:
        raw = await read_body(request, settings.max_body_bytes)
        return parse_json(raw, settings.max_json_depth)
    except RttError as e:
        if e.status == 400:
            raise _invalid([("", None, e.message)]) from None
        raise _failed(e.status, e.message) from None


def _path_id(request: Request) -> int:
    raw = request.path_params["id"]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_USER_ID:
        raise _invalid([("Id", raw, f"must be an integer from 1 to {MAX_USER_ID}")])
    return int(raw)


def _list_request(request: Request) -> tuple[dict[str, Any], str]:
    """The query string → the core's LIST fields and the order's property name."""
    params = {name.lower(): value for name, value in request.query_params.items()}
    errors: list[PropertyError] = [
        (name, value, "is not a supported parameter")
        for name, value in request.query_params.items()
        if name.lower() not in LIST_PARAMETERS
    ]
    data: dict[str, Any] = {}
    for name, default in (("page", 1), ("size", 25)):
        value = params.get(name, str(default))
        high = 10**9 if name == "page" else 100
        if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= high:
            errors.append((name, value, f"must be an integer from 1 to {high}"))
        else:
            data[name] = int(value)
    order = ORDERS.get(params.get("orderby", "Id").lower())
    if order is None:
        errors.append(("orderBy", params["orderby"], "must be Id, CreatedOn or UpdatedOn"))
    else:
        data["orderBy"] = order[1]
    direction = DIRECTIONS.get(params.get("dir", "1").lower())
    if direction is None:
        errors.append(("dir", params["dir"], "must be 1 (ascending) or -1 (descending)"))
    else:
        data["direction"] = direction
    if errors:
        raise _invalid(errors)
    return data, order[0] if order else "Id"


# --- routes ---------------------------------------------------------------------------------


async def _answered(request: Request, handle: Any) -> Response:
    try:
        response: Response = await handle(request)
    except _Answer as answer:
        return answer.response
    return response


async def _token(request: Request) -> Response:
    """OAuth2 password grant: form `grant_type=password&username&password`."""
    settings = _node(request).settings
    try:
        raw = await read_body(request, MAX_FORM_BYTES)
    except RttError as e:
        return json_response({"error": "invalid_request", "error_description": e.message}, 400)
    given = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
    try:
        form = TokenForm.model_validate(given)
    except ValidationError as e:
        if "grant_type" in failed_fields(e):
            return json_response({"error": "unsupported_grant_type"}, 400)
        return json_response(
            {"error": "invalid_request", "error_description": "username and password are required"},
            400,
        )
    caller = nexudus_auth.by_password(settings.apps, form.username, form.password)
    if caller is None:
        return json_response(
            {"error": "invalid_grant", "error_description": "bad username or password"}, 400
        )
    ttl = settings.nexudus_token_seconds
    access = nexudus_auth.issue(caller, ttl)
    return json_response(
        {"access_token": access, "token_type": "bearer", "expires_in": ttl},
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def _list(request: Request) -> Response:
    caller = _authorize(request, "List")
    data, order_name = _list_request(request)
    found = await _run(request, caller, "LIST", data)
    page, size, total = data["page"], data["size"], found["total"]
    first = (page - 1) * size
    records = [_record(item) for item in found["items"]]
    return json_response(
        {
            "Records": records,
            "CurrentPage": page,
            "CurrentPageSize": size,
            "CurrentOrderField": order_name,
            "CurrentSortDirection": data["direction"],
            "FirstItem": first + 1 if records else 0,
            "LastItem": first + len(records),
            "TotalItems": total,
            "TotalPages": -(-total // size),
            "HasNextPage": first + len(records) < total,
            "HasPreviousPage": page > 1,
        }
    )


async def _read(request: Request) -> Response:
    caller = _authorize(request, "Read")
    item = await _run(request, caller, "GET", {"id": _path_id(request)})
    return json_response(_record(item))


async def _create(request: Request) -> Response:
    caller = _authorize(request, "Create")
    data = _record_request(await _json_body(request), with_id=False)
    created = await _run(request, caller, "CREATE", data)
    return _done(caller, "created", {"Id": created["id"]})


async def _update(request: Request) -> Response:
    caller = _authorize(request, "Edit")
    body = await _json_body(request)
    if "id" in request.path_params and isinstance(body, dict):
        path_id = _path_id(request)
        if body.get("Id") is not None and body["Id"] != path_id:
            raise _invalid([("Id", body["Id"], "does not match the Id in the path")])
        body = {**body, "Id": path_id}
    data = _record_request(body, with_id=True)
    updated = await _run(request, caller, "UPDATE", data)
    return _done(caller, "updated", {"Id": updated["id"]})


async def _delete(request: Request) -> Response:
    caller = _authorize(request, "Delete")
    deleted = await _run(request, caller, "DELETE", {"id": _path_id(request)})
    return _done(caller, "deleted", {"Id": deleted["id"]})


async def token(request: Request) -> Response:
    return await _answered(request, _token)


async def records(request: Request) -> Response:
    """`/api/sys/chatusermessages`: GET lists, POST creates, PUT updates (Id in the body)."""
    handle = {"GET": _list, "HEAD": _list, "POST": _create, "PUT": _update}[request.method]
    return await _answered(request, handle)


async def record(request: Request) -> Response:
    """`/api/sys/chatusermessages/{Id}`: GET reads, PUT updates, DELETE deletes."""
    handle = {"GET": _read, "HEAD": _read, "PUT": _update, "DELETE": _delete}[request.method]
    return await _answered(request, handle)


ROUTES = [
    Route("/api/token", token, methods=["POST"]),
    Route("/api/sys/chatusermessages", records, methods=["GET", "POST", "PUT"]),
    Route("/api/sys/chatusermessages/{id}", record, methods=["GET", "PUT", "DELETE"]),
]
