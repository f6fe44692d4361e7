"""Event, presence, push-outbox and connection-token operations over S2S (API.md §2, §3, §4).

A real node on loopback; recipients are real RTT sockets, so "pushed" means a frame arrived and
"not stored" means neither the socket stream, the profile's events nor the push outbox has it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets

from tests.support.clients import S2S, TIMEOUT, open_socket, socket
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for

SYSTEM_FROM = {"id": None, "name": "App Administrator"}
EVENT_KEYS = {"evId", "eventType", "fromPlayerId", "toPlayerId", "createdAt", "eventData"}
PUSH_KEYS = {
    "pushId",
    "profileId",
    "kind",
    "ref",
    "title",
    "body",
    "data",
    "createdAt",
    "attempts",
}


async def send_event(s2s: S2S, to: list[Any], **data: Any) -> dict[str, Any]:
    body = {"toIds": to, "eventType": "score", "eventData": {"points": 10}, **data}
    return await s2s.ok("event", "SYS_SEND_EVENT_TO_PROFILES", body)


async def pending(s2s: S2S, profile: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    data: dict[str, Any] = {"limit": limit}
    if profile is not None:
        data["profileId"] = profile
    return list((await s2s.ok("push", "SYS_GET_PENDING", data))["items"])


def assert_error(status: int, body: Any, http: int, reason: int) -> None:
    assert status == http, body
    assert body["status"] == http, body
    assert body["reason_code"] == reason, body
    assert body["severity"] == "ERROR", body


async def stored_events(server: RunningServer, profile: str, app: str = "demo") -> list[Any]:
    """The profile's stored incoming events, read over its own socket."""
    async with socket(server, profile, app=app) as rtt:
        return list((await rtt.ok("event", "GET_EVENTS", {}))["incoming_events"])


async def latest_seq(server: RunningServer, profile: str) -> int:
    async with socket(server, profile) as rtt:
        return int(rtt.connect["seq"])


async def wait_online(s2s: S2S, profile: str, expected: bool) -> None:
    """Presence is updated when the server notices the socket; poll, bounded."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            data = await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": [profile]})
            if data["online"][profile] is expected:
                return
            await asyncio.sleep(0.02)


# --- event/SYS_SEND_EVENT_TO_PROFILES ------------------------------------------------------


async def test_event_counts_sent_and_invalid_recipients(server, s2s):
    """Pins: invalid toIds are reported in errorProfiles (as sent) without aborting the rest."""
    bad = [5, "", None, "x" * 129, ["p1"], {"id": "p1"}, True]
    data = await send_event(s2s, ["p1", *bad, "p2"])
    assert data == {"sentCount": 2, "errorCount": len(bad), "errorProfiles": bad}
    assert [e["toPlayerId"] for e in await stored_events(server, "p1")] == ["p1"]
    assert len(await stored_events(server, "p2")) == 1


async def test_event_reaches_a_connected_recipient(server, s2s):
    """Pins: the pushed frame is event/GET_EVENTS with the next seq and exactly the §3 event."""
    async with socket(server, "p1") as p1:
        before = time.time() * 1000
        data = await send_event(
            s2s, ["p1"], eventType="levelUp", eventData={"level": 3}, fromProfileId="boss"
        )
        [frame] = await p1.pushed(1)
        after = time.time() * 1000
    assert data["sentCount"] == 1
    assert set(frame) == {"seq", "service", "operation", "data"}
    assert frame["service"] == "event" and frame["operation"] == "GET_EVENTS"
    assert frame["seq"] == p1.connect["seq"] + 1
    event = frame["data"]
    assert set(event) == EVENT_KEYS
    assert isinstance(event["evId"], str) and event["evId"]
    assert event["eventType"] == "levelUp"
    assert event["fromPlayerId"] == "boss"
    assert event["toPlayerId"] == "p1"
    assert event["eventData"] == {"level": 3}
    assert before - 1 <= event["createdAt"] <= after + 1
    assert await pending(s2s, "p1") == []
    assert await stored_events(server, "p1") == [event]


async def test_each_recipient_gets_its_own_event(server, s2s):
    """Pins: one event row (own evId, own toPlayerId) per recipient, pushed to each."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        await send_event(s2s, ["p1", "p2"], eventData={"shared": True})
        [f1] = await p1.pushed(1)
        [f2] = await p2.pushed(1)
    assert f1["data"]["toPlayerId"] == "p1" and f2["data"]["toPlayerId"] == "p2"
    assert f1["data"]["evId"] != f2["data"]["evId"]
    assert f1["data"]["eventData"] == f2["data"]["eventData"] == {"shared": True}
    assert f1["data"]["createdAt"] == f2["data"]["createdAt"]


@pytest.mark.parametrize(
    ("sender", "expected"),
    [(None, None), ("System", None), ("player-7", "player-7")],
    ids=["null", "System", "profile"],
)
async def test_event_sender(server, s2s, sender, expected):
    """Pins: fromProfileId (null, "System" or a profile) is the event's fromPlayerId; null and
    "System" both reach clients as null (issue 10)."""
    async with socket(server, "p1") as p1:
        await send_event(s2s, ["p1"], fromProfileId=sender)
        [frame] = await p1.pushed(1)
    assert frame["data"]["fromPlayerId"] == expected


async def test_event_without_event_data_carries_an_empty_object(server, s2s):
    """Pins: absent eventData is stored and pushed as {}."""
    async with socket(server, "p1") as p1:
        await s2s.ok("event", "SYS_SEND_EVENT_TO_PROFILES", {"toIds": ["p1"], "eventType": "ping"})
        [frame] = await p1.pushed(1)
    assert frame["data"]["eventData"] == {}


async def test_duplicate_recipients_get_one_event(server, s2s):
    """Pins: a profile listed twice is sent one event, counted once."""
    data = await send_event(s2s, ["p1", "p1", "p2"])
    assert data == {"sentCount": 2, "errorCount": 0, "errorProfiles": []}
    assert len(await pending(s2s, "p1")) == 1
    assert len(await stored_events(server, "p1")) == 1


async def test_event_to_no_valid_recipient_stores_nothing(server, s2s):
    """Pins: a call whose toIds are all invalid reports them and stores/queues nothing."""
    data = await send_event(s2s, [5, ""])
    assert data == {"sentCount": 0, "errorCount": 2, "errorProfiles": [5, ""]}
    assert await pending(s2s) == []


async def test_offline_event_recipient_gets_a_push_entry(server, s2s):
    """Pins: an offline recipient's push entry is kind event, ref evId, title eventType."""
    await send_event(s2s, ["off"], eventType="gift", eventData={"coins": 5})
    [push] = await pending(s2s, "off")
    [event] = await stored_events(server, "off")
    assert set(push) == PUSH_KEYS
    assert push["kind"] == "event"
    assert push["profileId"] == "off"
    assert push["ref"] == event["evId"]
    assert push["title"] == "gift"
    assert push["data"] == {"coins": 5}
    assert push["createdAt"] == event["createdAt"]
    assert push["attempts"] == 0


EVENT_REFUSALS = [
    ({"eventType": "t"}, 40358),
    ({"toIds": None, "eventType": "t"}, 40358),
    ({"toIds": "p1", "eventType": "t"}, 40001),
    ({"toIds": [], "eventType": "t"}, 40001),
    ({"toIds": ["p1"]}, 40358),
    ({"toIds": ["p1"], "eventType": ""}, 40001),
    ({"toIds": ["p1"], "eventType": 5}, 40001),
    ({"toIds": ["p1"], "eventType": "t" * 129}, 40001),
    ({"toIds": ["p1"], "eventType": "t", "eventData": "x"}, 40001),
    ({"toIds": ["p1"], "eventType": "t", "eventData": [1]}, 40001),
    ({"toIds": ["p1"], "eventType": "t", "eventData": {"x": "y" * 131072}}, 40600),
    ({"toIds": ["p1"], "eventType": "t", "fromProfileId": 5}, 40001),
    ({"toIds": ["p1"], "eventType": "t", "fromProfileId": ""}, 40001),
    ({"toIds": ["p1"], "eventType": "t", "fromProfileId": {"id": None}}, 40001),
]
EVENT_REFUSAL_IDS = [
    "no-toIds",
    "null-toIds",
    "toIds-string",
    "toIds-empty",
    "no-eventType",
    "empty-eventType",
    "int-eventType",
    "long-eventType",
    "eventData-string",
    "eventData-list",
    "eventData-too-big",
    "from-int",
    "from-empty",
    "from-object",
]


@pytest.mark.parametrize(("data", "reason"), EVENT_REFUSALS, ids=EVENT_REFUSAL_IDS)
async def test_event_refusals_store_nothing(server, s2s, data, reason):
    """Pins: each invalid event send gets its code, pushes nothing and queues nothing."""
    async with socket(server, "p1") as p1:
        status, body = await s2s.call("event", "SYS_SEND_EVENT_TO_PROFILES", {**data})
        assert_error(status, body, 400, reason)
        await p1.silent(0.2)
        assert (await p1.ok("event", "GET_EVENTS", {}))["incoming_events"] == []
    assert await pending(s2s) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"toIds": ["a", "b", "c", "d"], "eventType": "t"}, 40621),
        ({"toIds": ["a"], "eventType": "t", "eventData": {"x": "y" * 300}}, 40600),
    ],
    ids=["too-many", "too-big"],
)
async def test_event_app_limits(server, data, reason):
    """Pins: app tight's max_recipients_s2s=3 (40621) and max_content_bytes=256 (40600)."""
    tight = S2S(server, app="tight")
    try:
        status, body = await tight.call("event", "SYS_SEND_EVENT_TO_PROFILES", data)
        assert_error(status, body, 400, reason)
        assert await pending(tight) == []
        ok = await send_event(tight, ["a", "b", 5])  # the limit counts entries as sent
        assert ok["sentCount"] == 2 and ok["errorProfiles"] == [5]
    finally:
        await tight.close()


async def test_many_event_recipients_are_40621_whatever_the_count(server):
    """Pins: any count of toIds above max_recipients_s2s is 40621, not 40001 for long lists."""
    tight = S2S(server, app="tight")
    try:
        for n in (4, 7, 50):
            status, body = await tight.call(
                "event",
                "SYS_SEND_EVENT_TO_PROFILES",
                {"toIds": [f"p{i}" for i in range(n)], "eventType": "t"},
            )
            assert_error(status, body, 400, 40621)
        assert await pending(tight) == []
    finally:
        await tight.close()


async def test_events_disabled_app_answers_40601(server):
    """Pins: an app with events off refuses SYS_SEND_EVENT_TO_PROFILES with 400/40601."""
    quiet = S2S(server, app="quiet")
    try:
        status, body = await quiet.call(
            "event", "SYS_SEND_EVENT_TO_PROFILES", {"toIds": ["p1"], "eventType": "t"}
        )
        assert_error(status, body, 400, 40601)
        assert await pending(quiet) == []
    finally:
        await quiet.close()


# --- event/SYS_SEND_RTT_ONLY ---------------------------------------------------------------


async def rtt_only(s2s: S2S, to: Any, **data: Any) -> tuple[int, Any]:
    body = {"toId": to, "eventType": "typing", "eventData": {"on": True}, **data}
    return await s2s.call("event", "SYS_SEND_RTT_ONLY", body)


async def test_rtt_only_reaches_online_sockets_without_seq(server, s2s):
    """Pins: an RTT-only event is a GET_EVENTS frame with no seq, to every socket of the profile."""
    async with socket(server, "p1") as first, socket(server, "p1") as second:
        status, body = await rtt_only(s2s, "p1", eventData={"on": True})
        assert status == 200
        assert set(body["data"]) == {"evId"}
        frames = [await first.recv(), await second.recv()]
    for frame in frames:
        assert set(frame) == {"service", "operation", "data"}, frame
        assert frame["service"] == "event" and frame["operation"] == "GET_EVENTS"
        assert set(frame["data"]) == EVENT_KEYS
        assert frame["data"]["evId"] == body["data"]["evId"]
        assert frame["data"]["eventType"] == "typing"
        assert frame["data"]["eventData"] == {"on": True}
        assert frame["data"]["toPlayerId"] == "p1"


async def test_rtt_only_is_never_stored(server, s2s):
    """Pins: RTT-only takes no seq, stores no event and queues no push, online or offline."""
    async with socket(server, "p1") as p1:
        assert (await rtt_only(s2s, "p1"))[0] == 200
        frame = await p1.recv()
        assert "seq" not in frame and frame["operation"] == "GET_EVENTS"
        assert (await p1.ok("event", "GET_EVENTS", {}))["incoming_events"] == []
        # the next stored item takes the next seq: RTT-only used none
        await send_event(s2s, ["p1"])
        [stored] = await p1.pushed(1)
        assert stored["seq"] == p1.connect["seq"] + 1
    status, _ = await rtt_only(s2s, "offline")
    assert status == 200
    assert await pending(s2s) == []
    async with socket(server, "offline") as late:
        assert late.connect["seq"] == 0
        await late.silent(0.3)
        assert (await late.ok("event", "GET_EVENTS", {}))["incoming_events"] == []


async def test_rtt_only_goes_to_the_named_profile_only(server, s2s):
    """Pins: other connected profiles (and other apps' same profileId) do not get the frame."""
    async with (
        socket(server, "p1") as p1,
        socket(server, "p2") as p2,
        socket(server, "p1", app="tight") as other_app,
    ):
        assert (await rtt_only(s2s, "p1"))[0] == 200
        frame = await p1.recv()
        assert frame["data"]["toPlayerId"] == "p1"
        await p2.silent(0.2)
        await other_app.silent(0.1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"toId": None}, 40358),
        ({"toId": ["p1"]}, 40001),
        ({"toId": ""}, 40001),
        ({"eventType": None}, 40358),
        ({"eventData": "x"}, 40001),
        ({"eventData": {"x": "y" * 131072}}, 40600),
    ],
    ids=["no-toId", "list-toId", "empty-toId", "no-eventType", "eventData-string", "too-big"],
)
async def test_rtt_only_refusals_push_nothing(server, s2s, data, reason):
    """Pins: an invalid RTT-only send is refused with its code and reaches no socket."""
    async with socket(server, "p1") as p1:
        body = {"toId": "p1", "eventType": "typing", "eventData": {}, **data}
        status, answer = await s2s.call("event", "SYS_SEND_RTT_ONLY", body)
        assert_error(status, answer, 400, reason)
        await p1.silent(0.2)


async def test_rtt_only_disabled_app_answers_40601(server):
    """Pins: an app with rtt off refuses SYS_SEND_RTT_ONLY with 400/40601."""
    quiet = S2S(server, app="quiet")
    try:
        status, body = await rtt_only(quiet, "p1")
        assert_error(status, body, 400, 40601)
    finally:
        await quiet.close()


# --- presence/SYS_GET_ONLINE ---------------------------------------------------------------


async def test_online_follows_sockets(server, s2s):
    """Pins: a profile is online while at least one socket is connected, offline after."""
    assert (await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["p1", "p2"]})) == {
        "online": {"p1": False, "p2": False}
    }
    first = await open_socket(server, "p1")
    second = await open_socket(server, "p1")
    try:
        data = await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["p1", "p2"]})
        assert data == {"online": {"p1": True, "p2": False}}
        await first.close()
        await asyncio.sleep(0.2)
        await wait_online(s2s, "p1", True)
    finally:
        await second.close()
    await wait_online(s2s, "p1", False)


async def test_online_is_per_app(server, s2s):
    """Pins: a profile connected in one app is not online in another app."""
    async with socket(server, "p1", app="tight"):
        assert (await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["p1"]}))["online"] == {
            "p1": False
        }
        tight = S2S(server, app="tight")
        try:
            data = await tight.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["p1"]})
            assert data["online"] == {"p1": True}
        finally:
            await tight.close()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, 40358),
        ({"profileIds": []}, 40001),
        ({"profileIds": "p1"}, 40001),
        ({"profileIds": [1]}, 40001),
    ],
    ids=["missing", "empty", "string", "int"],
)
async def test_online_validation(s2s, data, reason):
    """Pins: profileIds must be a non-empty list of profile id strings."""
    status, body = await s2s.call("presence", "SYS_GET_ONLINE", data)
    assert_error(status, body, 400, reason)


# --- push/SYS_GET_PENDING ------------------------------------------------------------------


async def test_pending_has_one_entry_per_offline_recipient(server, s2s):
    """Pins: offline recipients get one message entry each; connected ones get none."""
    async with socket(server, "on") as on:
        msg = await s2s.ok(
            "messaging",
            "SYS_SEND_MESSAGE",
            {
                "toProfileIds": ["off1", "on", "off2"],
                "contentJson": {"subject": "S", "text": "Body text"},
                "fromJson": {"id": None, "name": "Shop"},
            },
        )
        await on.pushed(1)
    items = await pending(s2s)
    assert [i["profileId"] for i in items] == ["off1", "off2"]
    for item in items:
        assert set(item) == PUSH_KEYS
        assert item["kind"] == "message"
        assert item["ref"] == msg["msgId"]
        assert item["title"] == "Shop"
        assert item["body"] == "Body text"
        assert item["data"] == {"msgId": msg["msgId"]}
        assert item["attempts"] == 0
        assert isinstance(item["pushId"], str) and item["pushId"]
        assert isinstance(item["createdAt"], int)
    assert items[0]["pushId"] != items[1]["pushId"]
    assert await pending(s2s, "on") == []


async def test_pending_mixes_messages_and_events_oldest_first(s2s):
    """Pins: the outbox lists message and event entries in the order they were created."""
    first = await s2s.send(["p1"])
    await send_event(s2s, ["p1"], eventType="e1")
    last = await s2s.send(["p1"])
    items = await pending(s2s, "p1")
    assert [i["kind"] for i in items] == ["message", "event", "message"]
    assert items[0]["ref"] == first and items[2]["ref"] == last
    assert items[1]["title"] == "e1"


async def test_pending_limit_and_profile_filter(s2s):
    """Pins: limit caps the oldest-first list; profileId keeps only that profile's entries."""
    ids = [await s2s.send(["a", "b"], {"text": f"m{n}"}) for n in range(3)]
    everything = await pending(s2s)
    assert len(everything) == 6
    assert await pending(s2s, limit=2) == everything[:2]
    only_b = await pending(s2s, "b")
    assert [i["ref"] for i in only_b] == ids
    assert all(i["profileId"] == "b" for i in only_b)
    assert await pending(s2s, "b", limit=1) == only_b[:1]
    assert await pending(s2s, "nobody") == []
    default = await s2s.ok("push", "SYS_GET_PENDING", {})
    assert default["items"] == everything


@pytest.mark.parametrize(
    "data",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": "5"},
        {"limit": True},
        {"profileId": 5},
        {"profileId": ""},
        {"profileId": ["a"]},
    ],
    ids=[
        "limit-zero",
        "limit-too-big",
        "limit-string",
        "limit-bool",
        "int-profile",
        "empty-profile",
        "list-profile",
    ],
)
async def test_pending_validation(s2s, data):
    """Pins: limit must be 1..1000 and profileId a profile id string (400/40001)."""
    status, body = await s2s.call("push", "SYS_GET_PENDING", data)
    assert_error(status, body, 400, 40001)


async def test_pending_is_per_app(server, s2s):
    """Pins: one app never sees another app's push entries."""
    await s2s.send(["p1"])
    tight = S2S(server, app="tight")
    try:
        assert await pending(tight) == []
    finally:
        await tight.close()
    assert len(await pending(s2s)) == 1


async def test_presence_in_another_app_does_not_suppress_push(server, s2s):
    """Pins: p1 online in app tight is still offline for app demo: demo queues its push."""
    async with socket(server, "p1", app="tight") as other_app:
        msg_id = await s2s.send(["p1"])
        await send_event(s2s, ["p1"])
        await other_app.silent(0.2)
    items = await pending(s2s, "p1")
    assert [(i["kind"], i["profileId"]) for i in items] == [("message", "p1"), ("event", "p1")]
    assert items[0]["ref"] == msg_id


async def test_push_disabled_app_queues_nothing(tmp_path: Path):
    """Pins: with the push feature off, offline recipients get no outbox entry (but the message)."""
    settings = settings_for(tmp_path)
    demo = settings.apps["demo"]
    no_push = demo.model_copy(update={"features": demo.features.model_copy(update={"push": False})})
    apps = {**settings.apps, "demo": no_push}
    async with running(settings.model_copy(update={"apps": apps})) as node:
        s2s = S2S(node)
        try:
            msg_id = await s2s.send(["off"])
            await send_event(s2s, ["off"])
            assert await pending(s2s) == []
            got = await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [msg_id]})
            assert got["actual"] == 1
            assert len(await stored_events(node, "off")) == 1
        finally:
            await s2s.close()


# --- rttRegistration/REQUEST_CLIENT_CONNECTION_TOKEN ---------------------------------------


async def request_token(s2s: S2S, **data: Any) -> dict[str, Any]:
    return await s2s.ok(
        "rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", {"profileId": "p9", **data}
    )


async def test_token_connects_as_its_profile(server, s2s):
    """Pins: the returned token opens /rtt as that profile, which then receives its messages."""
    data = await request_token(s2s, profileId="p9")
    assert set(data) == {"token", "expiresAt", "endpoints"}
    async with socket(server, "p9", tok=data["token"]) as rtt:
        assert rtt.connect["seq"] == 0 and rtt.connect["cxId"]
        msg_id = await s2s.send(["p9"])
        [frame] = await rtt.pushed(1)
        assert frame["data"]["msgId"] == msg_id
    async with socket(server, "p9", tok=data["token"], in_query=False) as rtt:
        assert rtt.connect["seq"] == 1


async def test_token_endpoints_and_expiry(server, s2s):
    """Pins: endpoints name this server's host/port; expiresAt is now + ttlSeconds in ms."""
    before = int(time.time())
    data = await request_token(s2s, ttlSeconds=120)
    after = int(time.time())
    assert data["endpoints"] == [
        {"protocol": "ws", "host": "127.0.0.1", "port": server.settings.port, "ssl": False}
    ]
    assert (before + 120) * 1000 <= data["expiresAt"] <= (after + 120) * 1000
    default = await request_token(s2s)
    assert (before + 3600) * 1000 <= default["expiresAt"] <= (int(time.time()) + 3600) * 1000


async def test_token_endpoints_use_the_public_address(tmp_path: Path):
    """Pins: public_host/public_port, when set, are what clients are told to dial."""
    settings = settings_for(tmp_path, public_host="rtt.example.test", public_port=443)
    async with running(settings) as node:
        s2s = S2S(node)
        try:
            data = await request_token(s2s)
        finally:
            await s2s.close()
    assert data["endpoints"] == [
        {"protocol": "ws", "host": "rtt.example.test", "port": 443, "ssl": False}
    ]


async def refused_connect(server: RunningServer, token: str, profile: str) -> dict[str, Any]:
    """CONNECT with `token` as `profile`; returns the DISCONNECT frame the server answers."""
    async with asyncio.timeout(TIMEOUT):
        ws = await websockets.connect(f"{server.ws_url}?token={token}")
        try:
            await ws.send(
                orjson.dumps(
                    {
                        "service": "rtt",
                        "operation": "CONNECT",
                        "data": {"appId": "demo", "profileId": profile, "auth": {}},
                    }
                ).decode()
            )
            frame = orjson.loads(await ws.recv())
            with pytest.raises(websockets.ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 4001
            return frame
        finally:
            await ws.close()


async def test_token_is_bound_to_its_profile(server, s2s):
    """Pins: a token minted for p9 cannot CONNECT as another profile."""
    data = await request_token(s2s, profileId="p9")
    frame = await refused_connect(server, data["token"], "someone-else")
    assert frame["operation"] == "DISCONNECT"
    assert frame["data"]["reasonCode"] == 40304


async def test_token_expires_after_its_ttl(server, s2s):
    """Pins: a token with ttlSeconds=1 is refused once expired (DISCONNECT 40304, close 4001)."""
    data = await request_token(s2s, ttlSeconds=1)
    await asyncio.sleep(max(0.0, data["expiresAt"] / 1000 - time.time()) + 1.1)
    frame = await refused_connect(server, data["token"], "p9")
    assert frame["operation"] == "DISCONNECT"
    assert frame["data"]["reasonCode"] == 40304


async def test_token_is_for_the_calling_app(server):
    """Pins: a token requested by app tight connects to tight and receives tight's messages."""
    tight = S2S(server, app="tight")
    try:
        data = await request_token(tight, profileId="t1")
        async with socket(server, "t1", app="tight", tok=data["token"]) as rtt:
            msg_id = await tight.send(["t1"])
            [frame] = await rtt.pushed(1)
            assert frame["data"]["msgId"] == msg_id
    finally:
        await tight.close()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"profileId": None}, 40358),
        ({"profileId": ""}, 40001),
        ({"profileId": 5}, 40001),
        ({"profileId": "x" * 129}, 40001),
        ({"ttlSeconds": 0}, 40001),
        ({"ttlSeconds": 7 * 24 * 3600 + 1}, 40001),
        ({"ttlSeconds": "60"}, 40001),
    ],
    ids=[
        "no-profile",
        "empty-profile",
        "int-profile",
        "long-profile",
        "ttl-zero",
        "ttl-too-long",
        "ttl-string",
    ],
)
async def test_token_validation(s2s, data, reason):
    """Pins: profileId is required and bounded; ttlSeconds must be 1 s .. 7 days."""
    status, body = await s2s.call(
        "rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", {"profileId": "p9", **data}
    )
    assert_error(status, body, 400, reason)


async def test_token_refused_when_rtt_disabled(server):
    """Pins: an app with rtt off cannot mint connection tokens (400/40601)."""
    quiet = S2S(server, app="quiet")
    try:
        status, body = await quiet.call(
            "rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", {"profileId": "p9"}
        )
        assert_error(status, body, 400, 40601)
    finally:
        await quiet.close()
