"""RongCloud's system channel (API.md §8) against a real node, on both engines.

Every signature here is computed in the test with hashlib, from the demo app's secret as the
TOML file states it, never with rtt's own signing code."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest

from rtt.settings import AppConfig, Features, Limits
from tests.support.clients import S2S, TIMEOUT, socket
from tests.support.server import running
from tests.support.server import test_apps as apps_for
from tests.support.server import test_settings as settings_for

APP_KEY, APP_SECRET = "demo-key", "rc-secret"  # tests/support/server.APPS_TOML
SEND = "/v4/system-channel/message/send"
PUBLISH = "/message/system/publish.json"
_nonces = itertools.count(1)


def signed(
    secret: str = APP_SECRET,
    *,
    key: str = APP_KEY,
    stamp: str | None = None,
    nonce: str | None = None,
    prefix: str = "",
) -> dict[str, str]:
    nonce = nonce or f"{next(_nonces)}{uuid.uuid4().hex[:8]}"
    stamp = stamp or str(int(time.time() * 1000))
    signature = hashlib.sha1((secret + nonce + stamp).encode()).hexdigest()
    return {
        f"{prefix}App-Key": key,
        f"{prefix}Nonce": nonce,
        f"{prefix}Timestamp": stamp,
        f"{prefix}Signature": signature,
    }


def _profile(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def body(to: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "fromUserId": "notices",
        "toUserIds": to,
        "messageType": "RC:TxtMsg",
        "content": orjson.dumps({"content": "hello"}).decode(),
        **extra,
    }


@pytest.fixture
async def http(server):
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


async def rc_send(http, payload: Any, headers: dict[str, str] | None = None):
    return await http.post(SEND, json=payload, headers=headers or signed())


async def _count(s2s: S2S) -> int:
    data = await s2s.ok("messaging", "SYS_GET_MESSAGES_PAGE", {"context": {}})
    return int(data["results"]["count"])


async def _pending(s2s: S2S, profile: str) -> list[dict[str, Any]]:
    data = await s2s.ok("push", "SYS_GET_PENDING", {"profileId": profile})
    return list(data["items"])


# --- the send ------------------------------------------------------------------------------


async def test_v4_send_pushes_to_online_queues_for_offline_and_answers_one_uid_each(
    server, http, s2s
):
    online, offline = _profile("on"), _profile("off")
    async with socket(server, online) as client:
        r = await rc_send(
            http,
            body(
                [online, offline],
                pushContent="you have mail",
                pushData="d=1",
                pushExt='{"title":"Notice"}',
                contentAvailable=1,
                disableUpdateLastMsg=True,
            ),
            {**signed(), "X-Request-ID": "trace-42"},
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == "trace-42"
        reply = r.json()
        assert reply["code"] == 0
        uids = {u["userId"]: u["messageUID"] for u in reply["result"]["messageUIDs"]}
        assert set(uids) == {online, offline} and uids[online] != uids[offline]
        [frame] = await client.pushed(1)
    assert (frame["service"], frame["operation"], frame["seq"]) == ("system", "INCOMING", 1)
    data = frame["data"]
    assert data["channelType"] == "SYSTEM" and data["targetId"] == "notices"
    assert data["messageUID"] == uids[online]
    assert data["messageType"] == "RC:TxtMsg" and data["content"] == '{"content":"hello"}'
    assert data["pushContent"] == "you have mail" and data["disableUpdateLastMsg"] is True
    assert abs(data["sentTime"] - time.time() * 1000) < 60_000
    assert await _pending(s2s, online) == []
    [push] = await _pending(s2s, offline)
    assert (push["kind"], push["title"], push["body"]) == ("system", "Notice", "you have mail")
    assert push["data"]["messageUID"] == uids[offline]
    assert push["data"]["pushData"] == "d=1" and push["data"]["pushExt"] == {"title": "Notice"}
    assert push["data"]["contentAvailable"] == 1 and push["ref"] == data["msgId"]


async def test_a_request_id_is_made_when_none_is_given(http):
    r = await rc_send(http, body([_profile("p")]))
    assert r.status_code == 200 and len(r.headers["x-request-id"]) >= 16


async def test_disable_push_queues_no_notification(http, s2s):
    offline = _profile("off")
    r = await rc_send(http, body([offline], pushContent="x", disablePush=True))
    assert r.json()["code"] == 0
    assert await _pending(s2s, offline) == []


async def test_custom_type_without_push_content_is_not_pushed_and_content_is_opaque(
    server, http, s2s
):
    online, offline = _profile("on"), _profile("off")
    async with socket(server, online) as client:
        r = await rc_send(
            http, body([online, offline], messageType="App:Order", content="not json <&>")
        )
        assert r.json()["code"] == 0, r.text
        [frame] = await client.pushed(1)
    assert frame["data"]["messageType"] == "App:Order"
    assert frame["data"]["content"] == "not json <&>" and "pushContent" not in frame["data"]
    assert await _pending(s2s, offline) == []


async def test_should_persist_0_is_live_and_queued_for_push_but_never_stored(server, http, s2s):
    online, offline = _profile("on"), _profile("off")
    before = await _count(s2s)
    async with socket(server, online) as client:
        r = await rc_send(http, body([online, offline], shouldPersist=0, pushContent="ping"))
        assert r.json()["code"] == 0
        frame = await client.recv()
        assert "seq" not in frame and frame["operation"] == "INCOMING"
        assert "msgId" not in frame["data"]
        counts = await client.ok("messaging", "GET_MESSAGE_COUNTS", {})
    assert counts["inbox"]["total"] == 0
    assert await _count(s2s) == before
    [push] = await _pending(s2s, offline)
    assert push["body"] == "ping" and push["ref"] == push["data"]["messageUID"]
    async with socket(server, online, since=0) as again:  # nothing in the stream to replay
        assert again.connect["seq"] == 0
        await again.silent(0.3)


async def test_a_persisted_send_is_replayed_on_resume_byte_for_byte(server, http):
    profile = _profile("p")
    r = await rc_send(http, body([profile]))
    assert r.json()["code"] == 0
    async with socket(server, profile, since=0) as client:
        [frame] = await client.pushed(1)
    assert (
        frame["seq"] == 1
        and frame["data"]["messageUID"] == (r.json()["result"]["messageUIDs"][0]["messageUID"])
    )


async def test_publish_json_form_with_repeated_to_user_id_answers_code_200(server, http, s2s):
    a, b = _profile("a"), _profile("b")
    form = (
        f"fromUserId=notices&toUserId={a}&toUserId={b}&objectName=RC%3ATxtMsg"
        "&content=%7B%22content%22%3A%22hi%22%7D&pushContent=hey&pushData=pd"
        "&isPersisted=1&isCounted=0&contentAvailable=1&disablePush=false"
    )
    async with socket(server, a) as client:
        r = await http.post(
            PUBLISH,
            content=form,
            headers={**signed(), "content-type": "application/x-www-form-urlencoded"},
        )
        assert (r.status_code, r.json()) == (200, {"code": 200}), r.text
        [frame] = await client.pushed(1)
    assert frame["data"]["content"] == '{"content":"hi"}' and frame["data"]["isCounted"] is False
    [push] = await _pending(s2s, b)
    assert push["body"] == "hey" and push["data"]["pushData"] == "pd"


async def test_publish_json_is_persisted_0_stores_nothing(http, s2s):
    before = await _count(s2s)
    form = f"fromUserId=n&toUserId={_profile('a')}&objectName=App%3AX&content=x&isPersisted=0"
    r = await http.post(PUBLISH, content=form, headers=signed())
    assert r.json() == {"code": 200}
    assert await _count(s2s) == before


# --- one inbox ------------------------------------------------------------------------------


async def test_a_rongcloud_message_is_one_inbox_entry_for_the_braincloud_operations(
    server, http, s2s
):
    profile = _profile("p")
    async with socket(server, profile) as client:
        r = await rc_send(http, body([profile, _profile("q")]))
        assert r.json()["code"] == 0
        [frame] = await client.pushed(1)
        msg_id = frame["data"]["msgId"]
        assert await client.ok("messaging", "GET_MESSAGE_COUNTS", {}) == {
            "inbox": {"total": 1, "unread": 1},
            "sent": {"total": 0, "unread": 0},
        }
        got = await client.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]})
        [entry] = got["items"]
        assert entry["message"]["from"] == {"id": None, "name": "notices"}
        assert entry["message"]["to"] == [profile]  # a system message's recipients are private
        assert entry["message"]["content"]["messageType"] == "RC:TxtMsg"
        assert entry["message"]["content"]["content"] == '{"content":"hello"}'
        marked = await client.ok(
            "messaging", "MARK_MESSAGES_READ", {"msgbox": "inbox", "msgIds": [msg_id]}
        )
        assert marked["actual"] == 1
        counts = await client.ok("messaging", "GET_MESSAGE_COUNTS", {})
        assert counts["inbox"] == {"total": 1, "unread": 0}
        listed = await s2s.ok(
            "messaging",
            "SYS_GET_MESSAGES_PAGE",
            {"context": {"searchCriteria": {"message.from.id": None}}},
        )
        assert msg_id in [m["msgId"] for m in listed["results"]["items"]]
        deleted = await client.ok(
            "messaging", "DELETE_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]}
        )
        assert deleted["actual"] == 1
        counts = await client.ok("messaging", "GET_MESSAGE_COUNTS", {})
        assert counts["inbox"]["total"] == 0


async def test_a_client_cannot_reply_to_the_channel_sender(server, http):
    profile = _profile("p")
    assert (await rc_send(http, body([profile], fromUserId="ops-bot"))).json()["code"] == 0
    async with socket(server, profile) as client:
        reply = await client.request(
            "messaging", "SEND_MESSAGE_SIMPLE", {"toProfileIds": ["ops-bot"], "text": "hi"}
        )
        assert (reply["status"], reply["reason_code"]) == (403, 40640)
        ok = await client.request(
            "messaging", "SEND_MESSAGE_SIMPLE", {"toProfileIds": ["someone"], "text": "hi"}
        )
        assert ok["status"] == 200


# --- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "code", "status"),
    [
        ({"toUserIds": []}, 1002, 400),
        ({"toUserIds": [f"u{i}" for i in range(101)]}, 1002, 400),
        ({"toUserIds": "u1"}, 1002, 400),
        ({"toUserIds": [""]}, 1002, 400),
        ({"fromUserId": None}, 1002, 400),
        ({"fromUserId": 7}, 1002, 400),
        ({"messageType": None}, 1002, 400),
        ({"messageType": "RC:NoSuchMsg"}, 1002, 400),
        ({"messageType": "X" * 33, "content": "x"}, 1002, 400),
        ({"content": "not json"}, 1002, 400),
        ({"content": "[1]"}, 1002, 400),
        ({"content": '{"text":"no content field"}'}, 1002, 400),
        ({"content": {"content": "an object, not a string"}}, 1002, 400),
        ({"messageType": "RC:ImgMsg", "content": '{"content":"b64"}'}, 1002, 400),
        ({"content": '{"content":"' + "x" * 131072 + '"}'}, 1005, 413),
        ({"messageType": "App:Big", "content": "é" * 65537}, 1005, 413),
        ({"pushContent": 5}, 1002, 400),
        ({"pushExt": "not json"}, 1002, 400),
        ({"pushExt": "[1]"}, 1002, 400),
        ({"shouldPersist": 2}, 1002, 400),
        ({"shouldPersist": "0"}, 1002, 400),
        ({"contentAvailable": True}, 1002, 400),
        ({"disablePush": "yes"}, 1002, 400),
        ({"disableUpdateLastMsg": 1}, 1002, 400),
    ],
)
async def test_a_bad_field_is_refused_in_rongcloud_shape_and_stores_nothing(
    http, s2s, change, code, status
):
    before = await _count(s2s)
    payload = {k: v for k, v in (body(["u1"]) | change).items() if v is not None}
    r = await rc_send(http, payload)
    assert r.status_code == status, r.text
    answer = r.json()
    assert answer["code"] == code and answer["errorMessage"]
    assert await _count(s2s) == before
    assert await _pending(s2s, "u1") == []


async def test_a_custom_type_of_32_characters_passes(http):
    r = await rc_send(http, body(["u1"], messageType="X" * 32, content="x"))
    assert r.json()["code"] == 0


async def test_body_that_is_not_a_json_object_is_1002(http):
    for raw in (b"[]", b"{not json", b""):
        r = await http.post(SEND, content=raw, headers=signed())
        assert (r.status_code, r.json()["code"]) == (400, 1002)


# --- the signature ---------------------------------------------------------------------------


async def test_seconds_and_milliseconds_timestamps_and_rc_prefixed_headers_all_pass(http):
    now = time.time()
    for headers in (
        signed(stamp=str(int(now))),
        signed(stamp=str(int(now * 1000))),
        signed(prefix="RC-"),
    ):
        r = await rc_send(http, body(["u1"]), headers)
        assert r.json()["code"] == 0, (headers, r.text)


@pytest.mark.parametrize(
    "make",
    [
        lambda: {},
        lambda: {"App-Key": APP_KEY, "Nonce": "1", "Timestamp": "1"},
        lambda: signed("wrong-secret"),
        lambda: signed(key="no-such-key"),
        lambda: {**signed(), "Signature": "0" * 40},
        lambda: {**signed(), "Signature": "not hex"},
        lambda: signed(stamp=str(int((time.time() - 301) * 1000))),
        lambda: signed(stamp=str(int(time.time() - 301))),
        lambda: signed(stamp=str(int(time.time() + 301))),
        lambda: signed(stamp="12ab"),
        lambda: signed(nonce="n" * 19),
    ],
    ids=[
        "none", "no-signature", "wrong-secret", "unknown-key", "mismatch", "not-hex",
        "old-ms", "old-s", "future", "bad-stamp", "long-nonce",
    ],
)  # fmt: skip
async def test_every_signature_failure_is_401_1004_before_the_body_is_read(http, s2s, make):
    """Headers are made when the test runs: a Timestamp made at collection drifts into the
    window by the time a long run reaches it."""
    headers = make()
    before = await _count(s2s)
    # a body that would be refused with 1002 if it were read at all
    r = await http.post(SEND, content=b"{not json", headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, 1004), r.text
    r = await http.post(SEND, json=body(["u1"]), headers=headers)
    assert (r.status_code, r.json()["code"]) == (401, 1004)
    assert await _count(s2s) == before


async def test_a_replayed_nonce_is_refused_and_sends_nothing_twice(http, s2s):
    profile = _profile("p")
    headers = signed()
    assert (await rc_send(http, body([profile]), headers)).json()["code"] == 0
    again = await rc_send(http, body([profile]), headers)
    assert (again.status_code, again.json()["code"]) == (401, 1004)
    found = await s2s.ok(
        "messaging",
        "SYS_GET_MESSAGES_PAGE",
        {"context": {"searchCriteria": {"message.to": {"$in": [profile]}}}},
    )
    assert found["results"]["count"] == 1


async def test_the_same_nonce_with_another_timestamp_is_another_request(http):
    """The pair is what a replay repeats: a nonce reused by chance a second later passes."""
    now = int(time.time())
    first = await rc_send(http, body(["u1"]), signed(nonce="42", stamp=str(now)))
    second = await rc_send(http, body(["u1"]), signed(nonce="42", stamp=str(now - 1)))
    assert first.json()["code"] == 0 and second.json()["code"] == 0


async def test_a_tampered_nonce_or_timestamp_fails_the_signature(http):
    headers = signed()
    r = await rc_send(http, body(["u1"]), {**headers, "Nonce": headers["Nonce"] + "1"})
    assert r.status_code == 401
    later = str(int(headers["Timestamp"]) + 1)
    r = await rc_send(http, body(["u1"]), {**headers, "Timestamp": later})
    assert r.status_code == 401


# --- limits of one app ----------------------------------------------------------------------


RC_KEY, RC_SECRET = "rc-key", "rc-app-secret"


def _rc_settings(tmp_path, features: Features | None = None, limits=None, **settings: Any):
    """The test apps plus `rc`, an app with RongCloud keys and its own features and limits."""
    app = AppConfig(
        secret="rc-client-secret-0123456789abcdef0123",
        app_key=RC_KEY,
        app_secret=RC_SECRET,
        features=features or Features(),
        limits=Limits(**(limits or {})),
    )
    return settings_for(tmp_path, apps=apps_for(tmp_path) | {"rc": app}, **settings)


@contextlib.asynccontextmanager
async def rc_node(settings):
    async with (
        running(settings) as node,
        httpx.AsyncClient(base_url=node.url, timeout=TIMEOUT) as http,
    ):
        yield node, http


def rc_signed() -> dict[str, str]:
    return signed(RC_SECRET, key=RC_KEY)


async def test_rate_counts_recipients_and_refuses_whole_with_429_1008(tmp_path):
    limits = {"rongcloud_rate_per_second": 5, "max_recipients_rongcloud": 5}
    async with rc_node(_rc_settings(tmp_path, limits=limits)) as (node, http):
        ok = await http.post(SEND, json=body([f"r{i}" for i in range(5)]), headers=rc_signed())
        assert ok.json()["code"] == 0
        over = await http.post(SEND, json=body(["r9"]), headers=rc_signed())
        assert (over.status_code, over.json()["code"]) == (429, 1008)
        engine = node.node.engine
        assert (await engine.store.counts("rc", "r9"))["inbox"]["total"] == 0
        assert (await engine.outbox.pending("rc", "r9", 10, None, 65536))[0] == []
        await asyncio.sleep(1.05)
        again = await http.post(SEND, json=body(["r9"]), headers=rc_signed())
        assert again.json()["code"] == 0


async def test_the_app_recipient_limit_is_1002(tmp_path):
    async with rc_node(_rc_settings(tmp_path, limits={"max_recipients_rongcloud": 3})) as (
        _,
        http,
    ):
        r = await http.post(SEND, json=body(["a", "b", "c", "d"]), headers=rc_signed())
        assert (r.status_code, r.json()["code"]) == (400, 1002)
        r = await http.post(SEND, json=body(["a", "b", "c"]), headers=rc_signed())
        assert r.json()["code"] == 0


async def test_a_disabled_feature_answers_403_1009(tmp_path):
    async with rc_node(_rc_settings(tmp_path, features=Features(messaging=False))) as (_, http):
        r = await http.post(SEND, json=body(["a"]), headers=rc_signed())
        assert (r.status_code, r.json()["code"]) == (403, 1009)


async def test_live_nonces_are_bounded_per_app(tmp_path):
    """RTT_RONGCLOUD_MAX_NONCES: past it a fresh request answers 429/1008 until some expire."""
    async with rc_node(_rc_settings(tmp_path, rongcloud_max_nonces=2)) as (_, http):
        for _ in range(2):
            assert (await http.post(SEND, json=body(["a"]), headers=rc_signed())).status_code == 200
        r = await http.post(SEND, json=body(["a"]), headers=rc_signed())
        assert (r.status_code, r.json()["code"]) == (429, 1008)


async def test_recorded_senders_are_bounded_per_app(tmp_path):
    """RTT_RONGCLOUD_MAX_SENDERS: a new fromUserId past it answers 1002; known ones still pass."""
    async with rc_node(_rc_settings(tmp_path, rongcloud_max_senders=1)) as (_, http):
        first = await http.post(SEND, json=body(["a"], fromUserId="one"), headers=rc_signed())
        assert first.json()["code"] == 0
        other = await http.post(SEND, json=body(["a"], fromUserId="two"), headers=rc_signed())
        assert (other.status_code, other.json()["code"]) == (400, 1002)
        again = await http.post(SEND, json=body(["a"], fromUserId="one"), headers=rc_signed())
        assert again.json()["code"] == 0
