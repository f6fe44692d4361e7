"""The Nexudus door (API.md §9) against a real node: tokens, Basic, roles, every field rule and
error shape of /api/sys/chatusermessages, and pushes of created, updated, deleted records."""

from __future__ import annotations

import base64
import datetime
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from rtt.api import nexudus_auth
from rtt.settings import ApiUser
from tests.support.clients import S2S, SECRETS, TIMEOUT, socket
from tests.support.server import RunningServer, running
from tests.support.server import test_apps as apps_for
from tests.support.server import test_settings as settings_for

PATH = "/api/sys/chatusermessages"
ROLES = ("List", "Read", "Create", "Edit", "Delete")
ENVELOPE = {
    "Status", "Message", "Value", "OpenInDialog", "OpenInWindow", "RedirectURL", "JavaScript",
    "UpdatedOn", "UpdatedBy", "Errors", "WasSuccessful",
}  # fmt: skip
RECORD = {
    "FromUserId", "ToUsers", "ChatText", "Delievered", "Id", "UniqueId", "CreatedOn",
    "UpdatedOn", "UpdatedBy", "IsNew", "SystemId",
}  # fmt: skip


def nexudus_apps(tmp):
    """The test apps, with API users holding one role each on `demo`, and on `tight` (3
    recipients, 256-byte content) an admin whose password `other` also uses."""
    apps = apps_for(tmp)
    users = {"admin": ApiUser(password="admin-password", roles=["admin"])}
    users |= {r.lower(): ApiUser(password=f"{r}-pw", roles=[f"ChatUserMessage-{r}"]) for r in ROLES}
    users["nobody"] = ApiUser(password="nobody-pw", roles=["Coworker-List"])
    apps["demo"] = apps["demo"].model_copy(update={"users": users})
    tight = {"admin": ApiUser(password="shared-pw", roles=["admin"])}
    apps["tight"] = apps["tight"].model_copy(update={"users": tight})
    apps["quiet"] = apps["quiet"].model_copy(update={"users": tight})
    return apps


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[RunningServer]:
    async with running(settings_for(tmp_path, apps=nexudus_apps(tmp_path))) as node:
        yield node


@pytest.fixture
async def http(server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def bearer(http, user: str = "admin", password: str = "admin-password") -> dict[str, str]:
    r = await http.post(
        "/api/token", data={"grant_type": "password", "username": user, "password": password}
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


ADMIN = basic("admin", "admin-password")


async def create(http, body: dict[str, Any], auth=ADMIN) -> int:
    r = await http.post(PATH, json=body, headers=auth)
    assert r.status_code == 200, r.text
    return int(r.json()["Value"]["Id"])


async def listing(http, auth=ADMIN, **params: Any) -> dict[str, Any]:
    r = await http.get(PATH, params=params, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


async def total(http) -> int:
    return int((await listing(http))["TotalItems"])


def assert_invalid(r: httpx.Response, *properties: str) -> list[dict[str, Any]]:
    """A 400 validation envelope naming exactly these properties, in order."""
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"Message", "Value", "Errors", "WasSuccessful"}
    assert body["Value"] is None and body["WasSuccessful"] is False
    assert [e["PropertyName"] for e in body["Errors"]] == list(properties)
    for e in body["Errors"]:
        assert set(e) == {"AttemptedValue", "Message", "PropertyName"}
        assert f"{e['PropertyName']}: {e['Message']}" in body["Message"]
    return body["Errors"]


def assert_denied(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == {"Message": "Authorization has been denied for this request."}
    assert "Bearer" in r.headers["www-authenticate"]


# --- POST /api/token ------------------------------------------------------------------------


async def test_token_password_grant_issues_a_bearer_token_that_works(http, server):
    r = await http.post(
        "/api/token",
        data={"grant_type": "password", "username": "admin", "password": "admin-password"},
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == server.settings.nexudus_token_seconds == 3600
    assert r.headers["cache-control"] == "no-store"
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await listing(http, auth))["TotalItems"] == 0


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "password", "username": "admin", "password": "wrong"}, "invalid_grant"),
        ({"grant_type": "password", "username": "ghost", "password": "x"}, "invalid_grant"),
        # the same credentials fit users of two apps: refused, not guessed
        ({"grant_type": "password", "username": "admin", "password": "shared-pw"}, "invalid_grant"),
        ({"grant_type": "password", "username": "demo/admin", "password": "x"}, "invalid_grant"),
        ({"grant_type": "client_credentials", "username": "admin"}, "unsupported_grant_type"),
        ({"username": "admin", "password": "admin-password"}, "unsupported_grant_type"),
        ({"grant_type": "password", "password": "admin-password"}, "invalid_request"),
        ({"grant_type": "password", "username": "admin"}, "invalid_request"),
    ],
)
async def test_token_refusals_are_oauth2_errors(http, form, error):
    r = await http.post("/api/token", data=form)
    assert r.status_code == 400
    assert r.json()["error"] == error


async def test_token_names_the_app_when_credentials_are_shared(http):
    """`<appId>/<user>` picks one of two apps whose users share a name and a password."""
    auth = await bearer(http, "tight/admin", "shared-pw")
    await create(http, {"FromUserId": 1, "ToUsers": [2]}, auth)
    assert (await listing(http, auth))["TotalItems"] == 1
    assert await total(http) == 0  # demo's records are not tight's


async def test_token_form_body_over_its_bound_is_refused(http):
    r = await http.post("/api/token", content=b"grant_type=password&x=" + b"a" * 20000)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


# --- who may call ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Token abc"},
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        basic("admin", "wrong"),
        basic("ghost", "admin-password"),
    ],
)
async def test_every_route_without_valid_credentials_is_401(http, headers):
    for method, url in [
        ("GET", PATH),
        ("POST", PATH),
        ("PUT", PATH),
        ("GET", f"{PATH}/1"),
        ("PUT", f"{PATH}/1"),
        ("DELETE", f"{PATH}/1"),
    ]:
        assert_denied(await http.request(method, url, headers=headers, json={"FromUserId": 1}))
    assert await total(http) == 0


async def test_a_connection_token_is_no_api_token(http):
    """A JWT signed with the app's client secret (a socket's token) names no API user's key."""
    tok = jwt.encode(
        {"sub": "admin", "app": "demo", "exp": int(time.time()) + 60},
        SECRETS["demo"],
        algorithm="HS256",
    )
    assert_denied(await http.get(PATH, headers={"Authorization": f"Bearer {tok}"}))


async def test_tampered_and_expired_tokens_are_401(http, server):
    auth = await bearer(http)
    token = auth["Authorization"].removeprefix("Bearer ")
    head, _claims, signature = token.split(".")
    forged = base64.urlsafe_b64encode(b'{"app":"demo","sub":"admin","exp":9999999999}')
    forged_token = f"{head}.{forged.decode().rstrip('=')}.{signature}"
    assert_denied(await http.get(PATH, headers={"Authorization": f"Bearer {forged_token}"}))
    app = server.settings.apps["demo"]
    caller = nexudus_auth.ApiCaller("demo", app, "admin", app.users["admin"])
    expired = nexudus_auth.issue(caller, -5)
    assert_denied(await http.get(PATH, headers={"Authorization": f"Bearer {expired}"}))


async def test_a_token_of_one_user_does_not_work_for_another_app(http):
    auth = await bearer(http, "tight/admin", "shared-pw")
    token = auth["Authorization"].removeprefix("Bearer ")
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["app"] == "tight"
    relabelled = jwt.encode({**payload, "app": "quiet"}, "a-guess-" * 8, algorithm="HS256")
    assert_denied(await http.get(PATH, headers={"Authorization": f"Bearer {relabelled}"}))


async def test_each_operation_needs_its_role(http):
    """ChatUserMessage-List|Read|Create|Edit|Delete: each user may do its one thing."""
    record = {"FromUserId": 1, "ToUsers": [2], "ChatText": "x"}
    calls = {
        "List": ("GET", PATH, None),
        "Read": ("GET", f"{PATH}/{{id}}", None),
        "Create": ("POST", PATH, record),
        "Edit": ("PUT", PATH, {**record, "Id": "{id}"}),
        "Delete": ("DELETE", f"{PATH}/{{id}}", None),
    }
    for role, (method, url, body) in calls.items():
        number = await create(http, record)
        if body is not None and body.get("Id") == "{id}":
            body = {**body, "Id": number}
        for user in ("nobody", *(r.lower() for r in ROLES if r != role)):
            r = await http.request(
                method, url.format(id=number), json=body, headers=basic(user, _pw(user))
            )
            assert_denied(r)
        for auth in (
            basic(role.lower(), f"{role}-pw"),
            await bearer(http, role.lower(), f"{role}-pw"),
        ):
            if role == "Delete":
                number = await create(http, record)
            r = await http.request(method, url.format(id=number), json=body, headers=auth)
            assert r.status_code == 200, (role, r.text)


def _pw(user: str) -> str:
    return "nobody-pw" if user == "nobody" else f"{user.capitalize()}-pw"


async def test_authentication_comes_before_the_body_is_read(http):
    """A bad body from an unknown caller answers 401 (not 400); one from a caller without the
    role too; nothing is stored either way."""
    for auth in ({}, basic("list", "List-pw")):
        r = await http.post(PATH, content=b"{not json", headers=auth)
        assert_denied(r)
    assert await total(http) == 0


# --- POST -----------------------------------------------------------------------------------


async def test_create_answers_the_seed_envelope_and_stores_the_record(http):
    before = time.time()
    r = await http.post(
        PATH,
        json={"FromUserId": 7, "ToUsers": [42, 43], "ChatText": "hello", "Delievered": True},
        headers=ADMIN,
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == ENVELOPE
    assert body["Status"] == 200 and body["WasSuccessful"] is True and body["Errors"] is None
    assert body["Message"] == "ChatUserMessage was successfully created."
    assert body["OpenInDialog"] is False and body["OpenInWindow"] is False
    assert body["RedirectURL"] is None and body["JavaScript"] is None
    assert body["UpdatedBy"] == "admin"
    stamp = datetime.datetime.fromisoformat(body["UpdatedOn"].replace("Z", "+00:00"))
    assert abs(stamp.timestamp() - before) < 5
    number = body["Value"]["Id"]
    assert isinstance(number, int) and number >= 1
    r = await http.get(f"{PATH}/{number}", headers=ADMIN)
    assert r.status_code == 200
    record = r.json()
    assert set(record) == RECORD
    assert record["Id"] == number
    assert record["FromUserId"] == 7 and record["ToUsers"] == [42, 43]
    assert record["ChatText"] == "hello" and record["Delievered"] is True
    assert record["CreatedOn"] == record["UpdatedOn"] and record["CreatedOn"].endswith("Z")
    assert len(record["UniqueId"]) == 36 and record["UniqueId"].count("-") == 4
    assert record["IsNew"] is False and record["SystemId"] is None


async def test_create_with_only_a_sender_is_the_seeds_own_example(http):
    """The seed posts `{"FromUserId": 0}`: a message with no recipients and no text."""
    number = await create(http, {"FromUserId": 0})
    record = (await http.get(f"{PATH}/{number}", headers=ADMIN)).json()
    assert record["FromUserId"] == 0 and record["ToUsers"] == []
    assert record["ChatText"] is None and record["Delievered"] is False


async def test_created_record_is_pushed_and_lands_in_both_boxes(server, http):
    async with socket(server, "42") as recipient, socket(server, "7") as sender:
        number = await create(http, {"FromUserId": 7, "ToUsers": [42], "ChatText": "hi"})
        [frame] = await recipient.pushed(1)
        assert (frame["service"], frame["operation"]) == ("messaging", "INCOMING")
        entry = frame["data"]
        assert entry["msgbox"] == "inbox" and entry["read"] is False
        assert entry["message"]["from"]["id"] == "7"
        assert entry["message"]["to"] == ["42"]
        assert entry["message"]["content"] == {"text": "hi"}
        counts = await sender.ok("messaging", "GET_MESSAGE_COUNTS", {})
        assert counts["sent"]["total"] == 1
        await sender.silent(0.2)  # the sender's own copy is stored, not pushed
    record = (await http.get(f"{PATH}/{number}", headers=ADMIN)).json()
    assert record["UniqueId"].replace("-", "") == entry["msgId"]


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, [("FromUserId", None)]),
        ({"FromUserId": None}, [("FromUserId", None)]),
        ({"FromUserId": "7"}, [("FromUserId", "7")]),
        ({"FromUserId": True}, [("FromUserId", True)]),
        ({"FromUserId": -1}, [("FromUserId", -1)]),
        ({"FromUserId": 2**31}, [("FromUserId", 2**31)]),
        ({"FromUserId": 1.5}, [("FromUserId", 1.5)]),
        ({"FromUserId": 1, "ToUsers": 5}, [("ToUsers", 5)]),
        ({"FromUserId": 1, "ToUsers": [1, "2"]}, [("ToUsers", [1, "2"])]),
        ({"FromUserId": 1, "ToUsers": [False]}, [("ToUsers", [False])]),
        ({"FromUserId": 1, "ChatText": 5}, [("ChatText", 5)]),
        ({"FromUserId": 1, "ChatText": {"a": 1}}, [("ChatText", {"a": 1})]),
        ({"FromUserId": 1, "Delievered": "yes"}, [("Delievered", "yes")]),
        ({"FromUserId": 1, "Delievered": 1}, [("Delievered", 1)]),
        (
            {"ToUsers": "x", "ChatText": 1, "Delievered": 0},
            [("FromUserId", None), ("ToUsers", "x"), ("ChatText", 1), ("Delievered", 0)],
        ),
    ],
)
async def test_create_field_rules_answer_400_per_property_and_store_nothing(http, body, errors):
    r = await http.post(PATH, json=body, headers=ADMIN)
    found = assert_invalid(r, *(name for name, _ in errors))
    assert [e["AttemptedValue"] for e in found] == [value for _, value in errors]
    if body.get("FromUserId") is None:
        assert found[0]["Message"] == "is a required field"
    assert await total(http) == 0


async def test_create_missing_sender_message_matches_api_md(http):
    r = await http.post(PATH, json={"ChatText": "x"}, headers=ADMIN)
    assert r.json()["Message"] == "FromUserId: is a required field"


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"text"', b""])
async def test_create_body_that_is_no_object_is_400(http, raw):
    r = await http.post(PATH, content=raw, headers={**ADMIN, "content-type": "application/json"})
    assert_invalid(r, "")
    assert await total(http) == 0


async def test_create_limits_of_the_app_answer_400_on_the_property(http):
    """On `tight`: 3 recipients at most (the S2S limit), content of 256 bytes at most."""
    auth = basic("tight/admin", "shared-pw")
    r = await http.post(PATH, json={"FromUserId": 1, "ToUsers": [1, 2, 3, 4]}, headers=auth)
    assert_invalid(r, "ToUsers")
    r = await http.post(PATH, json={"FromUserId": 1, "ChatText": "x" * 300}, headers=auth)
    assert_invalid(r, "ChatText")
    assert (await listing(http, auth))["TotalItems"] == 0
    # the limit counts users as sent, duplicates included (README "Recipients")
    assert_invalid(
        await http.post(PATH, json={"FromUserId": 1, "ToUsers": [1, 1, 2, 3]}, headers=auth),
        "ToUsers",
    )
    await create(http, {"FromUserId": 1, "ToUsers": [1, 2, 3], "ChatText": "x" * 200}, auth)


async def test_create_on_an_app_without_messaging_is_refused(http):
    auth = basic("quiet/admin", "shared-pw")
    r = await http.post(PATH, json={"FromUserId": 1}, headers=auth)
    assert r.status_code == 400
    assert r.json()["WasSuccessful"] is False and "messaging" in r.json()["Message"]


async def test_a_body_over_the_node_limit_is_413(tmp_path):
    settings = settings_for(tmp_path, apps=nexudus_apps(tmp_path), max_body_bytes=4096)
    async with (
        running(settings) as node,
        httpx.AsyncClient(base_url=node.url, timeout=TIMEOUT) as http,
    ):
        r = await http.post(PATH, json={"FromUserId": 1, "ChatText": "x" * 5000}, headers=ADMIN)
        assert r.status_code == 413 and r.json()["WasSuccessful"] is False
        assert await total(http) == 0


# --- GET ------------------------------------------------------------------------------------


async def test_list_envelope_and_paging_fields(http):
    numbers = [await create(http, {"FromUserId": 1, "ChatText": f"m{i}"}) for i in range(5)]
    assert numbers == sorted(numbers) and len(set(numbers)) == 5
    page = await listing(http, page=2, size=2)
    assert set(page) == {
        "Records", "CurrentPage", "CurrentPageSize", "CurrentOrderField", "CurrentSortDirection",
        "FirstItem", "LastItem", "TotalItems", "TotalPages", "HasNextPage", "HasPreviousPage",
    }  # fmt: skip
    assert [r["Id"] for r in page["Records"]] == numbers[2:4]
    assert page["CurrentPage"] == 2 and page["CurrentPageSize"] == 2
    assert page["CurrentOrderField"] == "Id" and page["CurrentSortDirection"] == 1
    assert page["FirstItem"] == 3 and page["LastItem"] == 4
    assert page["TotalItems"] == 5 and page["TotalPages"] == 3
    assert page["HasNextPage"] is True and page["HasPreviousPage"] is True
    last = await listing(http, page=3, size=2)
    assert [r["Id"] for r in last["Records"]] == numbers[4:]
    assert last["HasNextPage"] is False
    beyond = await listing(http, page=9, size=2)
    assert beyond["Records"] == [] and beyond["FirstItem"] == 0 and beyond["TotalItems"] == 5
    default = await listing(http)
    assert default["CurrentPageSize"] == 25 and [r["Id"] for r in default["Records"]] == numbers
    assert {r["ChatText"] for r in default["Records"]} == {f"m{i}" for i in range(5)}


@pytest.mark.parametrize("descending", ["-1", "Descending", "descending"])
async def test_list_descending_by_id(http, descending):
    numbers = [await create(http, {"FromUserId": 1}) for _ in range(3)]
    page = await listing(http, orderBy="Id", dir=descending)
    assert [r["Id"] for r in page["Records"]] == numbers[::-1]
    assert page["CurrentSortDirection"] == -1


async def test_list_by_created_and_updated_on(http):
    numbers = [await create(http, {"FromUserId": 1, "ChatText": str(i)}) for i in range(3)]
    by_created = await listing(http, orderby="CreatedOn", dir="-1")
    assert by_created["CurrentOrderField"] == "CreatedOn"
    assert [r["Id"] for r in by_created["Records"]] == numbers[::-1]
    time.sleep(0.01)  # a distinct UpdatedOn millisecond
    r = await http.put(
        PATH, json={"Id": numbers[0], "FromUserId": 1, "ChatText": "new"}, headers=ADMIN
    )
    assert r.status_code == 200
    by_updated = await listing(http, orderBy="updatedon", dir="-1", size=1)
    assert [r["Id"] for r in by_updated["Records"]] == [numbers[0]]
    assert by_updated["TotalItems"] == 3 and by_updated["HasNextPage"] is True


@pytest.mark.parametrize(
    ("params", "properties"),
    [
        ({"page": "0"}, ["page"]),
        ({"page": "x"}, ["page"]),
        ({"size": "0"}, ["size"]),
        ({"size": "101"}, ["size"]),
        ({"orderBy": "ChatText"}, ["orderBy"]),
        ({"dir": "up"}, ["dir"]),
        ({"ChatUserMessage_ChatText": "x"}, ["ChatUserMessage_ChatText"]),
        ({"size": "-1", "dir": "2"}, ["size", "dir"]),
    ],
)
async def test_list_parameter_rules(http, params, properties):
    assert_invalid(await http.get(PATH, params=params, headers=ADMIN), *properties)


async def test_read_unknown_or_malformed_id(http):
    number = await create(http, {"FromUserId": 1})
    r = await http.get(f"{PATH}/{number + 1000}", headers=ADMIN)
    assert r.status_code == 404
    body = r.json()
    assert body["Status"] == 404 and body["WasSuccessful"] is False and body["Value"] is None
    for bad in ("abc", "0", "-1", "1.5", str(2**31)):
        assert_invalid(await http.get(f"{PATH}/{bad}", headers=ADMIN), "Id")


# --- PUT ------------------------------------------------------------------------------------


async def test_update_with_id_in_the_body_pushes_updated(server, http):
    async with socket(server, "42") as recipient:
        number = await create(http, {"FromUserId": 7, "ToUsers": [42], "ChatText": "v1"})
        [incoming] = await recipient.pushed(1)
        r = await http.put(
            PATH,
            json={"Id": number, "FromUserId": 7, "ToUsers": [42], "ChatText": "v2",
                  "Delievered": True},
            headers=ADMIN,
        )  # fmt: skip
        assert r.status_code == 200
        body = r.json()
        assert set(body) == ENVELOPE
        assert body["Message"] == "ChatUserMessage was successfully updated."
        assert body["Value"] == {"Id": number}
        [updated] = await recipient.pushed(1)
    assert (updated["service"], updated["operation"]) == ("messaging", "UPDATED")
    assert updated["data"]["msgId"] == incoming["data"]["msgId"]
    assert updated["data"]["msgVer"] == 2
    assert updated["data"]["content"] == {"text": "v2", "delievered": True}
    record = (await http.get(f"{PATH}/{number}", headers=ADMIN)).json()
    assert record["ChatText"] == "v2" and record["Delievered"] is True
    assert record["UpdatedOn"] >= record["CreatedOn"]


async def test_update_replaces_the_whole_record_and_also_takes_the_id_in_the_path(http):
    number = await create(http, {"FromUserId": 7, "ChatText": "v1", "Delievered": True})
    r = await http.put(f"{PATH}/{number}", json={"FromUserId": 7}, headers=ADMIN)
    assert r.status_code == 200
    record = (await http.get(f"{PATH}/{number}", headers=ADMIN)).json()
    assert record["ChatText"] is None and record["Delievered"] is False


async def test_update_refusals(http):
    number = await create(http, {"FromUserId": 7, "ToUsers": [42], "ChatText": "v1"})
    same = {"Id": number, "FromUserId": 7, "ChatText": "v2"}
    assert_invalid(await http.put(PATH, json={"FromUserId": 7}, headers=ADMIN), "Id")
    assert_invalid(await http.put(PATH, json={"Id": number}, headers=ADMIN), "FromUserId")
    assert_invalid(await http.put(PATH, json={**same, "Id": "1"}, headers=ADMIN), "Id")
    assert_invalid(
        await http.put(PATH, json={**same, "FromUserId": 8}, headers=ADMIN), "FromUserId"
    )
    assert_invalid(await http.put(PATH, json={**same, "ToUsers": [43]}, headers=ADMIN), "ToUsers")
    r = await http.put(f"{PATH}/{number}", json={**same, "Id": number + 1}, headers=ADMIN)
    assert_invalid(r, "Id")
    r = await http.put(PATH, json={**same, "Id": number + 1000}, headers=ADMIN)
    assert r.status_code == 404 and r.json()["WasSuccessful"] is False
    record = (await http.get(f"{PATH}/{number}", headers=ADMIN)).json()
    assert record["ChatText"] == "v1" and record["ToUsers"] == [42]
    # restating the same sender and recipients is no change
    r = await http.put(PATH, json={**same, "ToUsers": [42]}, headers=ADMIN)
    assert r.status_code == 200


# --- DELETE ---------------------------------------------------------------------------------


async def test_delete_pushes_deleted_and_removes_the_record(server, http):
    async with socket(server, "42") as recipient:
        number = await create(http, {"FromUserId": 7, "ToUsers": [42], "ChatText": "bye"})
        [incoming] = await recipient.pushed(1)
        r = await http.delete(f"{PATH}/{number}", headers=ADMIN)
        assert r.status_code == 200
        body = r.json()
        assert set(body) == ENVELOPE
        assert body["Message"] == "ChatUserMessage was successfully deleted."
        assert body["Value"] == {"Id": number}
        [deleted] = await recipient.pushed(1)
        assert (deleted["service"], deleted["operation"]) == ("messaging", "DELETED")
        assert deleted["data"]["msgId"] == incoming["data"]["msgId"]
        counts = await recipient.ok("messaging", "GET_MESSAGE_COUNTS", {})
        assert counts["inbox"]["total"] == 0
    assert (await http.get(f"{PATH}/{number}", headers=ADMIN)).status_code == 404
    assert (await http.delete(f"{PATH}/{number}", headers=ADMIN)).status_code == 404
    assert await total(http) == 0
    later = await create(http, {"FromUserId": 7})
    assert later > number  # a number is never handed out twice


# --- one inbox under every dialect ----------------------------------------------------------


async def test_one_inbox_across_s2s_client_and_nexudus(server, http):
    """A message sent through S2S, a client's SEND_MESSAGE and Nexudus is read, counted,
    marked and deleted through the client operations, listed by the Sys page and by the
    Nexudus GET, and changed by Nexudus whoever sent it."""
    s2s = S2S(server)
    try:
        async with socket(server, "42") as reader, socket(server, "7") as writer:
            by_s2s = await s2s.send(["42"], {"text": "from s2s"})
            sent = await writer.ok(
                "messaging", "SEND_MESSAGE", {"toProfileIds": ["42"], "contentJson": {"text": "c"}}
            )
            by_client = sent["msgId"]
            number = await create(http, {"FromUserId": 7, "ToUsers": [42], "ChatText": "n"})
            frames = await reader.pushed(3)
            by_nexudus = frames[2]["data"]["msgId"]
            assert [f["data"]["msgId"] for f in frames[:2]] == [by_s2s, by_client]

            counts = await reader.ok("messaging", "GET_MESSAGE_COUNTS", {})
            assert counts["inbox"] == {"total": 3, "unread": 3}
            got = await reader.ok(
                "messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [by_nexudus]}
            )
            assert got["items"][0]["message"]["content"] == {"text": "n"}
            marked = await reader.ok(
                "messaging", "MARK_MESSAGES_READ", {"msgbox": "inbox", "msgIds": [by_nexudus]}
            )
            assert marked["actual"] == 1
            page = await reader.ok("messaging", "GET_MESSAGES_PAGE", {"context": {}})
            read = {i["msgId"]: i["read"] for i in page["results"]["items"]}
            assert read == {by_s2s: False, by_client: False, by_nexudus: True}

            sys_page = await s2s.ok("messaging", "SYS_GET_MESSAGES_PAGE", {"context": {}})
            assert {i["msgId"] for i in sys_page["results"]["items"]} == set(read)

            listed = await listing(http)
            records = {r["UniqueId"].replace("-", ""): r for r in listed["Records"]}
            assert set(records) == set(read) and listed["TotalItems"] == 3
            assert records[by_s2s]["FromUserId"] is None  # a system sender
            assert records[by_s2s]["ChatText"] == "from s2s"
            assert records[by_client]["FromUserId"] == 7 and records[by_client]["ToUsers"] == [42]
            assert records[by_nexudus]["Id"] == number
            assert len({r["Id"] for r in records.values()}) == 3

            # Nexudus changes a message another dialect sent: the reader gets UPDATED, DELETED
            s2s_number = records[by_s2s]["Id"]
            r = await http.put(
                PATH, json={"Id": records[by_client]["Id"], "FromUserId": 7, "ChatText": "e"},
                headers=ADMIN,
            )  # fmt: skip
            assert r.status_code == 200
            r = await http.delete(f"{PATH}/{s2s_number}", headers=ADMIN)
            assert r.status_code == 200
            updated, deleted = await reader.pushed(2)
            assert (updated["operation"], updated["data"]["msgId"]) == ("UPDATED", by_client)
            assert (deleted["operation"], deleted["data"]["msgId"]) == ("DELETED", by_s2s)

            # a client's own delete removes only its entry: Nexudus still lists the message
            deleted_entry = await reader.ok(
                "messaging", "DELETE_MESSAGES", {"msgbox": "inbox", "msgIds": [by_nexudus]}
            )
            assert deleted_entry["actual"] == 1
            counts = await reader.ok("messaging", "GET_MESSAGE_COUNTS", {})
            assert counts["inbox"] == {"total": 1, "unread": 1}
        listed = await listing(http)
        assert {r["Id"] for r in listed["Records"]} == {number, records[by_client]["Id"]}
        gone = await s2s.call("messaging", "SYS_GET_MESSAGES", {"msgIds": [by_s2s]})
        assert gone[1]["data"]["actual"] == 0
    finally:
        await s2s.close()
