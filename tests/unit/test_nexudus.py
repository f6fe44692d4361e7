"""The Nexudus door's pure parts: who credentials name, what a token proves, how a stored
message reads as a ChatUserMessage record."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import jwt
import orjson
import pytest

from rtt.api import nexudus, nexudus_auth
from rtt.settings import ApiUser, AppConfig, demo_apps

SECRET = "app-secret-0123456789abcdef0123456789abcdef"


def _apps(**users: str) -> dict[str, AppConfig]:
    one = {name: ApiUser(password=pw, roles=["ChatUserMessage-List"]) for name, pw in users.items()}
    return {
        "a": AppConfig(secret=SECRET, users=one),
        "b": AppConfig(secret=SECRET + "b", users={"admin": ApiUser(password="pw-b")}),
    }


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_name_the_one_app_whose_user_they_fit():
    apps = _apps(admin="pw-a")
    assert nexudus_auth.by_password(apps, "admin", "pw-a").app_id == "a"
    assert nexudus_auth.by_password(apps, "admin", "pw-b").app_id == "b"
    assert nexudus_auth.by_password(apps, "b/admin", "pw-b").app_id == "b"
    assert nexudus_auth.by_password(apps, "a/admin", "pw-b") is None
    assert nexudus_auth.by_password(apps, "admin", "nope") is None
    assert nexudus_auth.by_password(apps, "ghost", "pw-a") is None


def test_credentials_that_fit_two_apps_are_refused():
    apps = _apps(admin="pw-b")
    assert nexudus_auth.by_password(apps, "admin", "pw-b") is None
    assert nexudus_auth.by_password(apps, "a/admin", "pw-b").app_id == "a"


def test_a_token_is_signed_with_a_key_derived_from_secret_and_password():
    """Computed here from the documented recipe, not with rtt's signing code."""
    apps = _apps(admin="pw-a")
    caller = nexudus_auth.by_password(apps, "admin", "pw-a")
    token = nexudus_auth.issue(caller, 60)
    material = (
        b"rtt nexudus api token"
        + hashlib.sha256(b"admin").digest()
        + hashlib.sha256(b"pw-a").digest()
    )
    key = hmac.new(SECRET.encode(), material, hashlib.sha256).digest()
    claims = jwt.decode(token, key, algorithms=["HS256"])
    assert claims["app"] == "a" and claims["sub"] == "admin"
    assert abs(claims["exp"] - time.time() - 60) < 5
    assert nexudus_auth.by_header(apps, f"Bearer {token}") == caller
    assert nexudus_auth.by_header(apps, f"bearer   {token} ") == caller


def test_a_password_change_revokes_the_tokens_issued_before_it():
    token = nexudus_auth.issue(nexudus_auth.by_password(_apps(admin="old"), "admin", "old"), 60)
    assert nexudus_auth.by_header(_apps(admin="old"), f"Bearer {token}") is not None
    assert nexudus_auth.by_header(_apps(admin="new"), f"Bearer {token}") is None


def test_a_token_signed_with_the_app_secret_itself_is_refused():
    """A connection token names the same app and subject but no API user's key."""
    token = jwt.encode(
        {"app": "a", "sub": "admin", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    )
    assert nexudus_auth.by_header(_apps(admin="pw-a"), f"Bearer {token}") is None


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer x.y.z", "Digest abc", "Basic ***", _basic("admin", "bad")],
)
def test_headers_that_prove_nobody(header):
    assert nexudus_auth.by_header(_apps(admin="pw-a"), header) is None


def test_basic_and_roles():
    apps = _apps(admin="pw-a")
    caller = nexudus_auth.by_header(apps, _basic("admin", "pw-a"))
    assert caller is not None and caller.may("ChatUserMessage-List")
    assert not caller.may("ChatUserMessage-Delete")
    admin = nexudus_auth.by_header(apps, _basic("b/admin", "pw-b"))
    assert admin is not None and not admin.may("ChatUserMessage-List")  # no roles at all
    boss = nexudus_auth.ApiCaller("b", apps["b"], "x", ApiUser(password="p", roles=["admin"]))
    assert all(boss.may(f"ChatUserMessage-{r}") for r in ("List", "Read", "Delete"))


def test_a_record_shows_integer_profiles_and_leaves_out_the_others():
    item = {
        "id": 12,
        "msgId": "0123456789abcdef0123456789abcdef",
        "msgCr": 1736937000123,
        "msgUp": 1736937000999,
        "message": {
            "from": {"id": None, "name": "App"},
            "to": ["42", "p1", "007", "٣"],
            "content": orjson.Fragment(b'{"text":"hi","delievered":"no"}'),
        },
    }
    record = nexudus._record(item)
    assert record["FromUserId"] is None
    assert record["ToUsers"] == [42]  # "007" is not the profile of user 7
    assert record["ChatText"] == "hi" and record["Delievered"] is False
    assert record["UniqueId"] == "01234567-89ab-cdef-0123-456789abcdef"
    assert record["CreatedOn"] == "2025-01-15T10:30:00.123Z"
    assert record["UpdatedOn"] == "2025-01-15T10:30:00.999Z"


def test_the_demo_apps_api_user_signs_in_with_the_printed_password():
    """`rtt serve` without a config prints the demo app's API user password: it must work."""
    apps, printed = demo_apps()
    caller = nexudus_auth.by_password(apps, "admin", printed["admin_password"])
    assert caller is not None and caller.app_id == "demo"
    assert all(caller.may(f"ChatUserMessage-{r}") for r in ("List", "Create", "Delete"))
