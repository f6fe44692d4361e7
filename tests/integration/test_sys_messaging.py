"""Messaging Sys API over S2S (API.md §2, §3, §5 paging, §6 codes) against a real node.

Every refusal is also checked to leave storage as it was: the app's message count, the push
outbox and, where a recipient is connected, its socket (nothing pushed).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from tests.support.clients import S2S, Rtt, socket

SYSTEM_FROM = {"id": None, "name": "App Administrator"}


def send_data(to: Any, content: Any = None, from_json: Any = SYSTEM_FROM) -> dict[str, Any]:
    return {
        "toProfileIds": to,
        "contentJson": {"text": "hello"} if content is None else content,
        "fromJson": from_json,
    }


async def send(s2s: S2S, to: list[str], content: Any = None, from_json: Any = SYSTEM_FROM) -> str:
    data = await s2s.ok("messaging", "SYS_SEND_MESSAGE", send_data(to, content, from_json))
    return str(data["msgId"])


async def send_spaced(s2s: S2S, count: int, to: list[str] | None = None) -> list[str]:
    """`count` messages, oldest first, each created in a later millisecond than the last."""
    ids = []
    for n in range(count):
        ids.append(await send(s2s, to or ["p1"], {"text": f"m{n}"}))
        await asyncio.sleep(0.003)
    return ids


async def get(s2s: S2S, msg_id: str) -> dict[str, Any] | None:
    items = (await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [msg_id]}))["items"]
    return items[0] if items else None


async def page(s2s: S2S, context: dict[str, Any]) -> dict[str, Any]:
    return await s2s.ok("messaging", "SYS_GET_MESSAGES_PAGE", {"context": context})


async def count(s2s: S2S, criteria: dict[str, Any] | None = None) -> int:
    context: dict[str, Any] = {"pagination": {"rowsPerPage": 1, "pageNumber": 1}}
    if criteria is not None:
        context["searchCriteria"] = criteria
    return int((await page(s2s, context))["results"]["count"])


async def pending(s2s: S2S, profile: str | None = None) -> list[dict[str, Any]]:
    data: dict[str, Any] = {"limit": 1000}
    if profile is not None:
        data["profileId"] = profile
    return list((await s2s.ok("push", "SYS_GET_PENDING", data))["items"])


async def snapshot(s2s: S2S) -> tuple[int, list[dict[str, Any]], list[dict[str, Any]]]:
    """Everything a refused call must leave alone: all messages (and versions), push entries."""
    everything = await page(s2s, {"pagination": {"rowsPerPage": 100, "pageNumber": 1}})
    items = sorted(everything["results"]["items"], key=lambda m: m["msgId"])
    return everything["results"]["count"], items, await pending(s2s)


def assert_error(status: int, body: Any, http: int, reason: int) -> None:
    assert status == http, body
    assert body["status"] == http, body
    assert body["reason_code"] == reason, body
    assert body["severity"] == "ERROR", body


async def refused(
    s2s: S2S, operation: str, data: Any, http: int, reason: int, live: Rtt | None = None
) -> None:
    """The call is refused with (http, reason) and changes nothing observable."""
    before = await snapshot(s2s)
    status, body = await s2s.call("messaging", operation, data)
    assert_error(status, body, http, reason)
    assert await snapshot(s2s) == before
    if live is not None:
        await live.silent(0.2)


async def inbox_counts(rtt: Rtt) -> dict[str, Any]:
    return await rtt.ok("messaging", "GET_MESSAGE_COUNTS", {})


# --- SYS_SEND_MESSAGE ----------------------------------------------------------------------


async def test_sys_send_message_stores_one_shared_message(s2s):
    """Pins: the stored message has msgVer 1, null sender id, name/pic, recipients, content."""
    sender = {"id": None, "name": "Ops Team", "pic": "https://example.invalid/p.png"}
    msg_id = await send(s2s, ["p1", "p2"], {"subject": "S", "text": "T"}, sender)
    item = await get(s2s, msg_id)
    assert item is not None
    assert set(item) == {"msgId", "msgCr", "msgUp", "msgVer", "message"}
    assert item["msgId"] == msg_id
    assert item["msgVer"] == 1
    assert item["msgCr"] == item["msgUp"]
    message = item["message"]
    assert message["from"] == sender
    assert message["to"] == ["p1", "p2"]
    assert message["content"] == {"subject": "S", "text": "T"}
    assert message["sentAt"] == item["msgCr"]


async def test_sys_send_message_pushes_the_inbox_entry(server, s2s):
    """Pins: a connected recipient gets messaging/INCOMING with the full §3 inbox entry."""
    async with socket(server, "p1") as p1:
        msg_id = await send(s2s, ["p1", "p2"], {"text": "hi"})
        [frame] = await p1.pushed(1)
    assert frame["service"] == "messaging" and frame["operation"] == "INCOMING"
    assert frame["seq"] == p1.connect["seq"] + 1
    entry = frame["data"]
    assert entry["msgbox"] == "inbox" and entry["msgId"] == msg_id
    assert entry["read"] is False
    assert entry["mbVer"] == 1 and entry["msgVer"] == 1
    assert entry["mbCr"] == entry["mbUp"] == entry["msgCr"] == entry["msgUp"]
    assert entry["message"]["from"] == SYSTEM_FROM
    assert entry["message"]["to"] == ["p1"]  # each recipient sees only itself in `to`
    assert entry["message"]["content"] == {"text": "hi"}


async def test_sys_send_message_gives_every_recipient_an_inbox_entry(server, s2s):
    """Pins: unknown profiles simply get an inbox; each recipient (once) has its own entry."""
    msg_id = await send(s2s, ["never-seen", "other", "never-seen"], {"text": "welcome"})
    assert (await get(s2s, msg_id))["message"]["to"] == ["never-seen", "other"]
    assert [p["profileId"] for p in await pending(s2s)] == ["never-seen", "other"]
    async with socket(server, "never-seen") as rtt:
        counts = await inbox_counts(rtt)
        assert counts["inbox"] == {"total": 1, "unread": 1}
        assert counts["sent"]["total"] == 0
        got = await rtt.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]})
        assert got["items"][0]["message"]["content"] == {"text": "welcome"}


async def test_sys_send_message_up_to_the_recipient_limit(server):
    """Pins: exactly max_recipients_s2s recipients (3 for app tight) is accepted."""
    tight = S2S(server, app="tight")
    try:
        msg_id = await send(tight, ["a", "b", "c"])
        assert (await get(tight, msg_id))["message"]["to"] == ["a", "b", "c"]
    finally:
        await tight.close()


async def test_sys_send_message_simple_wraps_text(server, s2s):
    """Pins: SYS_SEND_MESSAGE_SIMPLE stores and pushes content {"text": text}."""
    async with socket(server, "p1") as p1:
        data = await s2s.ok(
            "messaging",
            "SYS_SEND_MESSAGE_SIMPLE",
            {"toProfileIds": ["p1", "p2"], "text": "plain words", "fromJson": SYSTEM_FROM},
        )
        [frame] = await p1.pushed(1)
    assert set(data) == {"msgId"}
    assert frame["data"]["msgId"] == data["msgId"]
    assert frame["data"]["message"]["content"] == {"text": "plain words"}
    assert (await get(s2s, data["msgId"]))["message"]["content"] == {"text": "plain words"}
    [push] = await pending(s2s, "p2")
    assert push["body"] == "plain words"


# --- send validation: every refusal leaves storage unchanged --------------------------------

TOO_BIG = {"text": "x" * 131072}


@pytest.mark.parametrize(
    ("data", "http", "reason"),
    [
        (send_data(["p1"], from_json={"id": "admin", "name": "A"}), 400, 40617),
        (send_data(["p1"], from_json={"id": 0, "name": "A"}), 400, 40617),
        (send_data(["p1"], from_json={"id": "", "name": "A"}), 400, 40617),
        (send_data(["p1"], from_json={"id": None}), 400, 40618),
        (send_data(["p1"], from_json={"id": None, "name": ""}), 400, 40618),
        (send_data(["p1"], from_json={"id": None, "name": "   "}), 400, 40618),
        (send_data(["p1"], from_json={"id": None, "name": 5}), 400, 40618),
        (send_data(["p1"], from_json={"id": None, "name": "n" * 257}), 400, 40618),
        (send_data(["p1"], from_json="App"), 400, 40618),
        ({"toProfileIds": ["p1"], "contentJson": {"a": 1}}, 400, 40618),
        (send_data(["p1"], TOO_BIG), 400, 40600),
        ({"contentJson": {"a": 1}, "fromJson": SYSTEM_FROM}, 400, 40358),
        ({"toProfileIds": ["p1"], "fromJson": SYSTEM_FROM}, 400, 40358),
        ({"toProfileIds": None, "contentJson": {"a": 1}, "fromJson": SYSTEM_FROM}, 400, 40358),
        ({"toProfileIds": ["p1"], "contentJson": None, "fromJson": SYSTEM_FROM}, 400, 40358),
        (send_data("p1"), 400, 40001),
        (send_data([]), 400, 40001),
        (send_data([5]), 400, 40001),
        (send_data([""]), 400, 40001),
        (send_data(["x" * 129]), 400, 40001),
        (send_data(["p1"], "text"), 400, 40001),
        (send_data(["p1"], [1, 2]), 400, 40001),
        (send_data(["p1"], from_json={"id": None, "name": "A", "pic": 5}), 400, 40001),
        ("not an object", 400, 40001),
    ],
    ids=[
        "from-id-string",
        "from-id-zero",
        "from-id-empty",
        "no-name",
        "empty-name",
        "blank-name",
        "int-name",
        "long-name",
        "from-not-object",
        "no-fromJson",
        "content-too-big",
        "no-toProfileIds",
        "no-contentJson",
        "null-toProfileIds",
        "null-contentJson",
        "to-not-list",
        "to-empty",
        "to-int",
        "to-empty-string",
        "to-too-long",
        "content-string",
        "content-list",
        "pic-int",
        "data-string",
    ],
)
async def test_sys_send_message_refusals_store_nothing(server, s2s, data, http, reason):
    """Pins: each invalid SYS_SEND_MESSAGE gets its reason code and stores/pushes nothing."""
    async with socket(server, "p1") as p1:
        await refused(s2s, "SYS_SEND_MESSAGE", data, http, reason, p1)


@pytest.mark.parametrize(
    ("data", "http", "reason"),
    [
        ({"toProfileIds": ["p1"], "fromJson": SYSTEM_FROM}, 400, 40358),
        ({"toProfileIds": ["p1"], "text": None, "fromJson": SYSTEM_FROM}, 400, 40358),
        ({"toProfileIds": ["p1"], "text": 5, "fromJson": SYSTEM_FROM}, 400, 40001),
        ({"toProfileIds": ["p1"], "text": {"a": 1}, "fromJson": SYSTEM_FROM}, 400, 40001),
        ({"toProfileIds": ["p1"], "text": "x" * 131072, "fromJson": SYSTEM_FROM}, 400, 40600),
        ({"toProfileIds": ["p1"], "text": "hi", "fromJson": {"id": "x", "name": "A"}}, 400, 40617),
        ({"toProfileIds": ["p1"], "text": "hi", "fromJson": {"id": None}}, 400, 40618),
        ({"text": "hi", "fromJson": SYSTEM_FROM}, 400, 40358),
    ],
    ids=[
        "no-text",
        "null-text",
        "int-text",
        "object-text",
        "text-too-big",
        "from-id",
        "no-name",
        "no-to",
    ],
)
async def test_sys_send_message_simple_refusals_store_nothing(server, s2s, data, http, reason):
    """Pins: each invalid SYS_SEND_MESSAGE_SIMPLE gets its reason code and stores nothing."""
    async with socket(server, "p1") as p1:
        await refused(s2s, "SYS_SEND_MESSAGE_SIMPLE", data, http, reason, p1)


@pytest.mark.parametrize(
    ("operation", "data", "reason"),
    [
        ("SYS_SEND_MESSAGE", send_data(["a", "b", "c", "d"]), 40621),
        ("SYS_SEND_MESSAGE_SIMPLE", {**send_data(["a", "b", "c", "d"]), "text": "t"}, 40621),
        ("SYS_SEND_MESSAGE", send_data(["a"], {"text": "x" * 250}), 40600),
        ("SYS_SEND_MESSAGE_SIMPLE", {**send_data(["a"]), "text": "x" * 250}, 40600),
    ],
    ids=["too-many", "simple-too-many", "too-big", "simple-too-big"],
)
async def test_app_limits_are_enforced(server, operation, data, reason):
    """Pins: app tight's max_recipients_s2s=3 (40621) and max_content_bytes=256 (40600)."""
    tight = S2S(server, app="tight")
    try:
        await send(tight, ["a"])
        await refused(tight, operation, data, 400, reason)
    finally:
        await tight.close()


async def test_content_limit_counts_serialized_bytes(server):
    """Pins: content just under max_content_bytes is accepted, one byte over is refused."""
    tight = S2S(server, app="tight")
    try:
        overhead = len(orjson.dumps({"text": ""}))
        await send(tight, ["a"], {"text": "x" * (256 - overhead)})
        await refused(
            tight,
            "SYS_SEND_MESSAGE",
            send_data(["a"], {"text": "x" * (257 - overhead)}),
            400,
            40600,
        )
        await refused(
            tight,
            "SYS_SEND_MESSAGE",
            send_data(["a"], {"text": "é" * (256 - overhead)}),  # 2 bytes each in UTF-8
            400,
            40600,
        )
    finally:
        await tight.close()


SYS_OPERATIONS = [
    ("SYS_SEND_MESSAGE", send_data(["p1"])),
    ("SYS_SEND_MESSAGE_SIMPLE", {**send_data(["p1"]), "text": "t"}),
    ("SYS_GET_MESSAGES", {"msgIds": ["x"]}),
    ("SYS_GET_MESSAGES_PAGE", {"context": {}}),
    ("SYS_GET_MESSAGES_PAGE_OFFSET", {"context": "abc", "pageOffset": 1}),
    ("SYS_UPDATE_MESSAGE", {"msgId": "x", "msgVer": -1, "contentJson": {"a": 1}}),
    ("SYS_DELETE_MESSAGE", {"msgId": "x", "msgVer": -1}),
    ("SYS_DELETE_MESSAGES", {"msgIds": ["x"]}),
]


@pytest.mark.parametrize(("operation", "data"), SYS_OPERATIONS, ids=[o for o, _ in SYS_OPERATIONS])
async def test_messaging_disabled_app_answers_40601(server, operation, data):
    """Pins: every messaging Sys op of an app with messaging off is 400/40601, nothing queued."""
    quiet = S2S(server, app="quiet")
    try:
        status, body = await quiet.call("messaging", operation, data)
        assert_error(status, body, 400, 40601)
        assert await pending(quiet) == []
    finally:
        await quiet.close()


# --- SYS_GET_MESSAGES ----------------------------------------------------------------------


async def test_sys_get_messages_counts_requested_and_actual(s2s):
    """Pins: requested counts asked ids, actual the found ones; items follow request order."""
    a, b = await send(s2s, ["p1"], {"n": "a"}), await send(s2s, ["p2"], {"n": "b"})
    got = await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [b, "missing", a]})
    assert set(got) == {"requested", "actual", "items"}
    assert got["requested"] == 3
    assert got["actual"] == 2
    assert [i["msgId"] for i in got["items"]] == [b, a]
    assert [i["message"]["content"] for i in got["items"]] == [{"n": "b"}, {"n": "a"}]


async def test_sys_get_messages_of_unknown_ids_is_empty(s2s):
    """Pins: only unknown ids answer actual 0 and no items (not an error)."""
    got = await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": ["nope", "nada"]})
    assert got == {"requested": 2, "actual": 0, "items": []}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, 40358),
        ({"msgIds": None}, 40358),
        ({"msgIds": "abc"}, 40001),
        ({"msgIds": []}, 40001),
        ({"msgIds": [5]}, 40001),
        ({"msgIds": ["x"] * 1001}, 40001),
    ],
    ids=["missing", "null", "string", "empty", "int", "too-many"],
)
async def test_sys_get_messages_validation(s2s, data, reason):
    """Pins: msgIds must be a non-empty list of at most 1000 id strings."""
    status, body = await s2s.call("messaging", "SYS_GET_MESSAGES", data)
    assert_error(status, body, 400, reason)


# --- SYS_GET_MESSAGES_PAGE -----------------------------------------------------------------


async def test_page_defaults_to_newest_first(s2s):
    """Pins: the default page is 10 rows, newest msgCr first, with count/page/more flags."""
    ids = await send_spaced(s2s, 12)
    data = await page(s2s, {})
    assert set(data) == {"context", "results"}
    assert isinstance(data["context"], str) and data["context"]
    results = data["results"]
    assert set(results) == {"count", "page", "items", "moreAfter", "moreBefore"}
    assert results["count"] == 12
    assert results["page"] == 1
    assert [i["msgId"] for i in results["items"]] == ids[::-1][:10]
    assert results["moreAfter"] is True
    assert results["moreBefore"] is False
    assert set(results["items"][0]) == {"msgId", "msgCr", "msgUp", "msgVer", "message"}


async def test_page_pagination(s2s):
    """Pins: rowsPerPage/pageNumber select the right slice and the more* flags follow."""
    ids = await send_spaced(s2s, 5)
    newest_first = ids[::-1]
    second = await page(s2s, {"pagination": {"rowsPerPage": 2, "pageNumber": 2}})
    assert [i["msgId"] for i in second["results"]["items"]] == newest_first[2:4]
    assert second["results"]["moreBefore"] is True and second["results"]["moreAfter"] is True
    last = await page(s2s, {"pagination": {"rowsPerPage": 2, "pageNumber": 3}})
    assert [i["msgId"] for i in last["results"]["items"]] == newest_first[4:]
    assert last["results"]["moreAfter"] is False
    beyond = await page(s2s, {"pagination": {"rowsPerPage": 2, "pageNumber": 9}})
    assert beyond["results"]["items"] == [] and beyond["results"]["count"] == 5


async def test_page_sort_criteria(s2s):
    """Pins: sortCriteria msgCr 1 sorts oldest first; msgUp -1 puts the last updated first."""
    ids = await send_spaced(s2s, 4)
    ascending = await page(s2s, {"sortCriteria": {"msgCr": 1}})
    assert [i["msgId"] for i in ascending["results"]["items"]] == ids
    await asyncio.sleep(0.003)
    await s2s.ok(
        "messaging",
        "SYS_UPDATE_MESSAGE",
        {"msgId": ids[0], "msgVer": -1, "contentJson": {"edited": True}},
    )
    by_update = await page(s2s, {"sortCriteria": {"msgUp": -1}})
    assert [i["msgId"] for i in by_update["results"]["items"]] == [ids[0], *ids[:0:-1]]


async def test_page_filter_on_sender(server, s2s):
    """Pins: message.from.id null selects system messages, a profileId that profile's sends."""
    system_id = await send(s2s, ["bob"])
    async with socket(server, "alice") as alice:
        sent = await alice.ok(
            "messaging", "SEND_MESSAGE", {"toProfileIds": ["bob"], "contentJson": {"hi": 1}}
        )
    system = await page(s2s, {"searchCriteria": {"message.from.id": None}})
    assert [i["msgId"] for i in system["results"]["items"]] == [system_id]
    by_alice = await page(s2s, {"searchCriteria": {"message.from.id": "alice"}})
    assert [i["msgId"] for i in by_alice["results"]["items"]] == [sent["msgId"]]
    assert by_alice["results"]["items"][0]["message"]["from"]["id"] == "alice"
    assert await count(s2s, {"message.from.id": "carol"}) == 0


async def test_page_filter_on_recipients(s2s):
    """Pins: message.to $in selects messages addressed to any of the listed profiles."""
    to_p1 = await send(s2s, ["p1"])
    to_p2 = await send(s2s, ["p2", "p3"])
    to_p4 = await send(s2s, ["p4"])
    in_p2 = await page(s2s, {"searchCriteria": {"message.to": {"$in": ["p2"]}}})
    assert [i["msgId"] for i in in_p2["results"]["items"]] == [to_p2]
    either = await page(
        s2s, {"searchCriteria": {"message.to": {"$in": ["p1", "p3"]}}, "sortCriteria": {"msgCr": 1}}
    )
    assert {i["msgId"] for i in either["results"]["items"]} == {to_p1, to_p2}
    assert either["results"]["count"] == 2
    assert to_p4 not in {i["msgId"] for i in either["results"]["items"]}
    assert await count(s2s, {"message.to": {"$in": ["nobody"]}}) == 0


async def test_page_filter_on_creation_time(s2s):
    """Pins: msgCr $gte/$lte bound the creation time inclusively."""
    ids = await send_spaced(s2s, 5)
    created = {i: (await get(s2s, i))["msgCr"] for i in ids}
    middle = created[ids[2]]

    async def between(criteria: dict[str, Any]) -> list[str]:
        result = await page(
            s2s, {"searchCriteria": {"msgCr": criteria}, "sortCriteria": {"msgCr": 1}}
        )
        return [i["msgId"] for i in result["results"]["items"]]

    assert await between({"$gte": middle}) == ids[2:]
    assert await between({"$lte": middle}) == ids[:3]
    assert await between({"$gte": middle, "$lte": middle}) == [ids[2]]
    assert await between({"$gte": created[ids[1]], "$lte": created[ids[3]]}) == ids[1:4]
    assert await between({"$gte": created[ids[4]] + 1}) == []


async def test_page_filters_combine(server, s2s):
    """Pins: several criteria must all hold (AND), not any of them."""
    await send(s2s, ["p1"])
    target = await send(s2s, ["p2"])
    async with socket(server, "alice") as alice:
        await alice.ok(
            "messaging", "SEND_MESSAGE", {"toProfileIds": ["p2"], "contentJson": {"x": 1}}
        )
    result = await page(
        s2s, {"searchCriteria": {"message.from.id": None, "message.to": {"$in": ["p2"]}}}
    )
    assert [i["msgId"] for i in result["results"]["items"]] == [target]


@pytest.mark.parametrize(
    "context",
    [
        {"searchCriteria": {"msgbox": "inbox"}},
        {"searchCriteria": {"read": False}},
        {"searchCriteria": {"mbCr": {"$gte": 0}}},
        {"searchCriteria": {"message.content.text": "hi"}},
        {"searchCriteria": {"message.to": "p1"}},
        {"searchCriteria": {"message.to": {"$in": []}}},
        {"searchCriteria": {"message.to": {"$in": [1]}}},
        {"searchCriteria": {"message.to": {"$in": "p1"}}},
        {"searchCriteria": {"message.to": {"$in": [f"p{n}" for n in range(101)]}}},
        {"searchCriteria": {"message.to": {"$nin": ["p1"]}}},
        {"searchCriteria": {"msgCr": {"$gt": 0}}},
        {"searchCriteria": {"msgCr": {"gte": 0}}},
        {"searchCriteria": {"msgCr": {"$gte": "0"}}},
        {"searchCriteria": {"msgCr": {"$gte": True}}},
        {"searchCriteria": {"msgCr": {}}},
        {"searchCriteria": {"msgCr": 5}},
        {"searchCriteria": {"message.from.id": 5}},
        {"searchCriteria": {"message.from.id": {"$ne": None}}},
        {"searchCriteria": "msgCr"},
        {"searchCriteria": ["msgCr"]},
        {"sortCriteria": {"mbCr": -1}},
        {"sortCriteria": {"msgCr": 0}},
        {"sortCriteria": {"msgCr": "desc"}},
        {"sortCriteria": {"message.to": 1}},
        {"sortCriteria": ["msgCr"]},
    ],
    ids=[
        "msgbox",
        "read",
        "mbCr",
        "content",
        "to-without-operator",
        "in-empty",
        "in-ints",
        "in-string",
        "in-too-many",
        "nin",
        "gt",
        "no-dollar",
        "gte-string",
        "gte-bool",
        "empty-condition",
        "cr-equality",
        "from-int",
        "from-ne",
        "criteria-string",
        "criteria-list",
        "sort-box-field",
        "sort-zero",
        "sort-string",
        "sort-unsortable",
        "sort-list",
    ],
)
async def test_page_bad_criteria_is_40384(s2s, context):
    """Pins: any search or sort criterion outside the Sys whitelist is 400/40384."""
    await send(s2s, ["p1"])
    status, body = await s2s.call("messaging", "SYS_GET_MESSAGES_PAGE", {"context": context})
    assert_error(status, body, 400, 40384)


@pytest.mark.parametrize(
    "context",
    [
        "opaque",
        ["pagination"],
        5,
        {"pagination": "all"},
        {"pagination": {"rowsPerPage": 0}},
        {"pagination": {"rowsPerPage": 101}},
        {"pagination": {"rowsPerPage": "10"}},
        {"pagination": {"rowsPerPage": True}},
        {"pagination": {"rowsPerPage": 2.5}},
        {"pagination": {"pageNumber": 0}},
        {"pagination": {"pageNumber": -1}},
    ],
    ids=[
        "string",
        "list",
        "int",
        "pagination-string",
        "rows-zero",
        "rows-too-many",
        "rows-string",
        "rows-bool",
        "rows-float",
        "page-zero",
        "page-negative",
    ],
)
async def test_page_bad_context_is_40383(s2s, context):
    """Pins: a context that is not a valid object with sane pagination is 400/40383."""
    status, body = await s2s.call("messaging", "SYS_GET_MESSAGES_PAGE", {"context": context})
    assert_error(status, body, 400, 40383)


async def test_page_without_context_is_40358(s2s):
    """Pins: SYS_GET_MESSAGES_PAGE needs a context (missing parameter)."""
    for data in ({}, {"context": None}):
        status, body = await s2s.call("messaging", "SYS_GET_MESSAGES_PAGE", data)
        assert_error(status, body, 400, 40358)


# --- SYS_GET_MESSAGES_PAGE_OFFSET ----------------------------------------------------------


async def offset(s2s: S2S, context: Any, page_offset: Any) -> dict[str, Any]:
    return await s2s.ok(
        "messaging", "SYS_GET_MESSAGES_PAGE_OFFSET", {"context": context, "pageOffset": page_offset}
    )


async def test_page_offset_moves_forward_and_back(s2s):
    """Pins: the opaque context plus ±pageOffset reaches the same pages as pageNumber does."""
    ids = await send_spaced(s2s, 5)
    newest_first = ids[::-1]
    first = await page(s2s, {"pagination": {"rowsPerPage": 2, "pageNumber": 1}})
    second = await offset(s2s, first["context"], 1)
    assert second["results"]["page"] == 2
    assert [i["msgId"] for i in second["results"]["items"]] == newest_first[2:4]
    third = await offset(s2s, second["context"], 1)
    assert [i["msgId"] for i in third["results"]["items"]] == newest_first[4:]
    assert third["results"]["moreAfter"] is False
    back = await offset(s2s, third["context"], -2)
    assert back["results"]["page"] == 1
    assert [i["msgId"] for i in back["results"]["items"]] == newest_first[:2]
    assert back["results"]["moreBefore"] is False
    same = await offset(s2s, second["context"], 0)
    assert same["results"] == second["results"]


async def test_page_offset_keeps_criteria_and_sort(s2s):
    """Pins: the opaque context carries searchCriteria and sortCriteria to the next page."""
    to_p1 = []
    for n in range(3):
        to_p1.append(await send(s2s, ["p1"], {"n": n}))
        await send(s2s, ["p2"], {"n": n})
        await asyncio.sleep(0.003)
    first = await page(
        s2s,
        {
            "pagination": {"rowsPerPage": 2, "pageNumber": 1},
            "searchCriteria": {"message.to": {"$in": ["p1"]}},
            "sortCriteria": {"msgCr": 1},
        },
    )
    assert [i["msgId"] for i in first["results"]["items"]] == to_p1[:2]
    second = await offset(s2s, first["context"], 1)
    assert second["results"]["count"] == 3
    assert [i["msgId"] for i in second["results"]["items"]] == to_p1[2:]


def forged(query: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(query)).decode().rstrip("=")


VALID_QUERY = {"scope": "sys", "filters": [], "sort": [["msgCr", -1]], "page": 1, "rows": 10}


async def test_a_forged_but_valid_cursor_is_accepted(s2s):
    """Pins: the forgery cases below are refused for their content, not for being hand-made."""
    await send(s2s, ["p1"])
    result = await offset(s2s, forged(VALID_QUERY), 0)
    assert result["results"]["count"] == 1


@pytest.mark.parametrize(
    "context",
    [
        "not base64 !!",
        "",
        base64.urlsafe_b64encode(b"not json").decode(),
        forged([1, 2, 3]),
        forged({"scope": "sys"}),
        forged({**VALID_QUERY, "scope": "box"}),
        forged({**VALID_QUERY, "filters": [["message.content", "eq", "x"]]}),
        forged({**VALID_QUERY, "filters": [["msgCr", "ne", 1]]}),
        forged({**VALID_QUERY, "filters": [["msgCr", "gte", "1"]]}),
        forged({**VALID_QUERY, "sort": [["mbCr", -1]]}),
        forged({**VALID_QUERY, "rows": 1000}),
        forged({**VALID_QUERY, "rows": 0}),
        forged({**VALID_QUERY, "page": "1"}),
        {"pagination": {"pageNumber": 1}},
        "x" * 20000,
    ],
    ids=[
        "not-base64",
        "empty",
        "not-json",
        "json-list",
        "missing-keys",
        "box-scope",
        "unknown-filter",
        "bad-operator",
        "bad-value",
        "bad-sort",
        "rows-too-many",
        "rows-zero",
        "page-string",
        "object",
        "too-long",
    ],
)
async def test_page_offset_malformed_context_is_40383(s2s, context):
    """Pins: a context that is not an intact Sys cursor is 400/40383, never a wider query."""
    status, body = await s2s.call(
        "messaging", "SYS_GET_MESSAGES_PAGE_OFFSET", {"context": context, "pageOffset": 1}
    )
    assert_error(status, body, 400, 40383)


async def test_page_offset_rejects_a_client_box_cursor(server, s2s):
    """Pins: a cursor from a client's GET_MESSAGES_PAGE is not accepted by the Sys op (40383)."""
    await send(s2s, ["p1"])
    async with socket(server, "p1") as p1:
        box_page = await p1.ok("messaging", "GET_MESSAGES_PAGE", {"context": {}})
    status, body = await s2s.call(
        "messaging",
        "SYS_GET_MESSAGES_PAGE_OFFSET",
        {"context": box_page["context"], "pageOffset": 0},
    )
    assert_error(status, body, 400, 40383)


async def test_page_offset_before_the_first_page_is_40383(s2s):
    """Pins: an offset that would go below page 1 is refused (40383)."""
    first = await page(s2s, {})
    status, body = await s2s.call(
        "messaging", "SYS_GET_MESSAGES_PAGE_OFFSET", {"context": first["context"], "pageOffset": -1}
    )
    assert_error(status, body, 400, 40383)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"pageOffset": 1}, 40358),
        ({"context": "CTX"}, 40358),
        ({"context": "CTX", "pageOffset": "1"}, 40001),
        ({"context": "CTX", "pageOffset": 1.5}, 40001),
        ({"context": "CTX", "pageOffset": True}, 40001),
    ],
    ids=["no-context", "no-offset", "offset-string", "offset-float", "offset-bool"],
)
async def test_page_offset_parameter_validation(s2s, data, reason):
    """Pins: context and pageOffset are required (40358); pageOffset must be an integer (40001)."""
    ctx = (await page(s2s, {}))["context"]
    data = {k: ctx if v == "CTX" else v for k, v in data.items()}
    status, body = await s2s.call("messaging", "SYS_GET_MESSAGES_PAGE_OFFSET", data)
    assert_error(status, body, 400, reason)


# --- SYS_UPDATE_MESSAGE --------------------------------------------------------------------


async def update(s2s: S2S, msg_id: str, version: int, content: Any) -> tuple[int, Any]:
    return await s2s.call(
        "messaging",
        "SYS_UPDATE_MESSAGE",
        {"msgId": msg_id, "msgVer": version, "contentJson": content},
    )


async def test_update_latest_version(s2s):
    """Pins: msgVer -1 updates whatever the version; the shared content and msgVer change."""
    msg_id = await send(s2s, ["p1", "p2"], {"text": "v1"})
    before = await get(s2s, msg_id)
    await asyncio.sleep(0.003)
    status, body = await update(s2s, msg_id, -1, {"text": "v2"})
    assert status == 200
    assert body["data"] == {"requested": 1, "actual": 1, "msgId": msg_id}
    after = await get(s2s, msg_id)
    assert after["message"]["content"] == {"text": "v2"}
    assert after["msgVer"] == 2
    assert after["msgCr"] == before["msgCr"]
    assert after["msgUp"] > before["msgUp"]
    assert after["message"]["to"] == ["p1", "p2"]
    status, _ = await update(s2s, msg_id, -1, {"text": "v3"})
    assert status == 200
    assert (await get(s2s, msg_id))["msgVer"] == 3


async def test_update_exact_version_and_stale_version(server, s2s):
    """Pins: the current msgVer updates; a stale one is 40598 and changes nothing."""
    msg_id = await send(s2s, ["p1"], {"text": "v1"})
    status, _ = await update(s2s, msg_id, 1, {"text": "v2"})
    assert status == 200
    assert (await get(s2s, msg_id))["msgVer"] == 2
    async with socket(server, "p1") as p1:
        for stale in (1, 3, 0):
            before = await snapshot(s2s)
            status, body = await update(s2s, msg_id, stale, {"text": "stale"})
            assert_error(status, body, 400, 40598)
            assert await snapshot(s2s) == before
        await p1.silent(0.2)
    item = await get(s2s, msg_id)
    assert item["message"]["content"] == {"text": "v2"} and item["msgVer"] == 2


async def test_concurrent_updates_of_one_version_let_exactly_one_win(s2s):
    """Pins: msgVer is a store compare-and-set: one racing same-version update wins, rest 40598."""
    for _ in range(6):  # several rounds, so the race is really exercised
        msg_id = await send(s2s, ["p1"], {"text": "v1"})
        results = await asyncio.gather(*(update(s2s, msg_id, 1, {"writer": n}) for n in range(6)))
        winners = [n for n, (status, _) in enumerate(results) if status == 200]
        assert len(winners) == 1, results
        for status, body in results:
            if status != 200:
                assert_error(status, body, 400, 40598)
        item = await get(s2s, msg_id)
        assert item["msgVer"] == 2
        assert item["message"]["content"] == {"writer": winners[0]}


async def test_concurrent_latest_version_updates_all_apply(s2s):
    """Pins: msgVer -1 never goes stale: racing -1 updates all apply, none answers 40598."""
    for _ in range(3):
        msg_id = await send(s2s, ["p1"], {"text": "v1"})
        results = await asyncio.gather(*(update(s2s, msg_id, -1, {"writer": n}) for n in range(6)))
        assert [status for status, _ in results] == [200] * 6, results
        assert (await get(s2s, msg_id))["msgVer"] == 7


async def test_delete_latest_version_racing_an_update_still_deletes(s2s):
    """Pins: SYS_DELETE_MESSAGE with msgVer -1 deletes even if an update lands meanwhile."""
    for _ in range(4):
        msg_id = await send(s2s, ["p1"])
        results = await asyncio.gather(
            update(s2s, msg_id, -1, {"edit": 1}),
            delete(s2s, msg_id, -1),
            update(s2s, msg_id, -1, {"edit": 2}),
        )
        status, body = results[1]
        assert status == 200, body
        assert await get(s2s, msg_id) is None
        for status, body in (results[0], results[2]):  # an update after the delete: not found
            assert status == 200 or body["reason_code"] == 40595, body


async def test_update_unknown_message_is_40595(s2s):
    """Pins: updating a message that does not exist is 400/40595, with -1 or a version."""
    await send(s2s, ["p1"])
    for version in (-1, 1):
        status, body = await update(s2s, "no-such-message", version, {"a": 1})
        assert_error(status, body, 400, 40595)


async def test_update_pushes_updated_to_connected_recipients(server, s2s):
    """Pins: each recipient online gets messaging/UPDATED with the next seq and new content."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        msg_id = await send(s2s, ["p1", "p2"], {"text": "v1"})
        [incoming1] = await p1.pushed(1)
        [incoming2] = await p2.pushed(1)
        status, _ = await update(s2s, msg_id, 1, {"text": "v2"})
        assert status == 200
        [updated1] = await p1.pushed(1)
        [updated2] = await p2.pushed(1)
    stored = await get(s2s, msg_id)
    for incoming, updated in ((incoming1, updated1), (incoming2, updated2)):
        assert updated["service"] == "messaging" and updated["operation"] == "UPDATED"
        assert updated["seq"] == incoming["seq"] + 1
        assert updated["data"]["msgId"] == msg_id
        assert updated["data"]["msgVer"] == 2
        assert updated["data"]["content"] == {"text": "v2"}
        assert updated["data"]["msgUp"] == stored["msgUp"]


async def test_update_is_seen_by_recipients_reading_later(server, s2s):
    """Pins: the update changes the one shared content every recipient reads."""
    msg_id = await send(s2s, ["p1"], {"text": "v1"})
    await update(s2s, msg_id, -1, {"text": "v2"})
    async with socket(server, "p1") as p1:
        got = await p1.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]})
    assert got["items"][0]["message"]["content"] == {"text": "v2"}
    assert got["items"][0]["msgVer"] == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"msgVer": -1, "contentJson": {"a": 1}}, 40358),
        ({"msgId": "ID", "contentJson": {"a": 1}}, 40358),
        ({"msgId": "ID", "msgVer": -1}, 40358),
        ({"msgId": 5, "msgVer": -1, "contentJson": {"a": 1}}, 40001),
        ({"msgId": "ID", "msgVer": "1", "contentJson": {"a": 1}}, 40001),
        ({"msgId": "ID", "msgVer": -2, "contentJson": {"a": 1}}, 40001),
        ({"msgId": "ID", "msgVer": True, "contentJson": {"a": 1}}, 40001),
        ({"msgId": "ID", "msgVer": -1, "contentJson": "text"}, 40001),
        ({"msgId": "ID", "msgVer": -1, "contentJson": {"t": "x" * 131072}}, 40600),
    ],
    ids=[
        "no-msgId",
        "no-msgVer",
        "no-content",
        "int-msgId",
        "string-msgVer",
        "msgVer-below-minus-one",
        "bool-msgVer",
        "string-content",
        "content-too-big",
    ],
)
async def test_update_validation_changes_nothing(server, s2s, data, reason):
    """Pins: each invalid SYS_UPDATE_MESSAGE is refused and leaves the message and socket alone."""
    msg_id = await send(s2s, ["p1"], {"text": "v1"})
    data = {k: msg_id if v == "ID" else v for k, v in data.items()}
    async with socket(server, "p1") as p1:
        await refused(s2s, "SYS_UPDATE_MESSAGE", data, 400, reason, p1)


async def test_update_content_limit_is_the_apps(server):
    """Pins: an update is held to max_content_bytes like a send (app tight: 256 bytes)."""
    tight = S2S(server, app="tight")
    try:
        msg_id = await send(tight, ["a"])
        await refused(
            tight,
            "SYS_UPDATE_MESSAGE",
            {"msgId": msg_id, "msgVer": -1, "contentJson": {"text": "x" * 300}},
            400,
            40600,
        )
    finally:
        await tight.close()


# --- SYS_DELETE_MESSAGE(S) -----------------------------------------------------------------


async def delete(s2s: S2S, msg_id: Any, version: Any) -> tuple[int, Any]:
    return await s2s.call("messaging", "SYS_DELETE_MESSAGE", {"msgId": msg_id, "msgVer": version})


async def test_delete_checks_the_version(s2s):
    """Pins: a stale msgVer is 40598 and keeps the message; the current one deletes it."""
    msg_id = await send(s2s, ["p1"])
    await update(s2s, msg_id, -1, {"text": "v2"})
    keep = await send(s2s, ["p1"])
    before = await snapshot(s2s)
    status, body = await delete(s2s, msg_id, 1)
    assert_error(status, body, 400, 40598)
    assert await snapshot(s2s) == before
    status, body = await delete(s2s, msg_id, 2)
    assert status == 200 and body == {"status": 200, "data": {}}
    assert await get(s2s, msg_id) is None
    assert await get(s2s, keep) is not None
    assert await count(s2s) == 1


async def test_delete_latest_version(s2s):
    """Pins: msgVer -1 deletes whatever the version."""
    msg_id = await send(s2s, ["p1"])
    await update(s2s, msg_id, -1, {"text": "v2"})
    status, _ = await delete(s2s, msg_id, -1)
    assert status == 200
    assert await get(s2s, msg_id) is None


async def test_delete_unknown_or_already_deleted_is_40595(s2s):
    """Pins: deleting a missing message is 40595, including a second delete of the same id."""
    msg_id = await send(s2s, ["p1"])
    status, body = await delete(s2s, "no-such-message", -1)
    assert_error(status, body, 400, 40595)
    assert (await delete(s2s, msg_id, 1))[0] == 200
    status, body = await delete(s2s, msg_id, -1)
    assert_error(status, body, 400, 40595)


async def test_delete_pushes_deleted_and_empties_every_box(server, s2s):
    """Pins: DELETED reaches connected holders with the next seq; no box keeps the message."""
    async with socket(server, "alice") as alice, socket(server, "bob") as bob:
        sent = await alice.ok(
            "messaging", "SEND_MESSAGE", {"toProfileIds": ["bob"], "contentJson": {"x": 1}}
        )
        msg_id = sent["msgId"]
        [incoming] = await bob.pushed(1)
        assert (await inbox_counts(alice))["sent"]["total"] == 1
        status, _ = await delete(s2s, msg_id, 1)
        assert status == 200
        [deleted] = await bob.pushed(1)
        assert deleted["service"] == "messaging" and deleted["operation"] == "DELETED"
        assert deleted["seq"] == incoming["seq"] + 1
        assert deleted["data"] == {"msgId": msg_id, "msgVer": 1}
        [sender_deleted] = await alice.pushed(1)
        assert sender_deleted["data"] == {"msgId": msg_id, "msgVer": 1}
        assert (await inbox_counts(bob))["inbox"]["total"] == 0
        assert (await inbox_counts(alice))["sent"]["total"] == 0
        reply = await bob.request(
            "messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]}
        )
        assert reply["reason_code"] == 40595


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"msgVer": -1}, 40358),
        ({"msgId": "ID"}, 40358),
        ({"msgId": "", "msgVer": -1}, 40001),
        ({"msgId": "ID", "msgVer": "1"}, 40001),
        ({"msgId": "ID", "msgVer": -5}, 40001),
    ],
    ids=["no-msgId", "no-msgVer", "empty-msgId", "string-msgVer", "bad-msgVer"],
)
async def test_delete_validation_changes_nothing(server, s2s, data, reason):
    """Pins: an invalid SYS_DELETE_MESSAGE is refused, keeps the message and pushes nothing."""
    msg_id = await send(s2s, ["p1"])
    data = {k: msg_id if v == "ID" else v for k, v in data.items()}
    async with socket(server, "p1") as p1:
        await refused(s2s, "SYS_DELETE_MESSAGE", data, 400, reason, p1)


async def test_delete_messages_counts_requested_and_actual(server, s2s):
    """Pins: SYS_DELETE_MESSAGES deletes the known ids, counts all, pushes DELETED for each."""
    ids = [await send(s2s, ["p1"], {"n": n}) for n in range(3)]
    keep = await send(s2s, ["p1"])
    await update(s2s, ids[1], -1, {"n": "edited"})
    async with socket(server, "p1") as p1:
        got = await s2s.ok(
            "messaging", "SYS_DELETE_MESSAGES", {"msgIds": [ids[0], "nope", ids[1], ids[2], "nada"]}
        )
        assert got == {"requested": 5, "actual": 3}
        frames = await p1.pushed(3)
        assert [f["operation"] for f in frames] == ["DELETED"] * 3
        assert {f["data"]["msgId"] for f in frames} == set(ids)
        assert [f["seq"] for f in frames] == [p1.connect["seq"] + n for n in (1, 2, 3)]
        assert (await inbox_counts(p1))["inbox"]["total"] == 1
    assert await count(s2s) == 1
    assert await get(s2s, keep) is not None
    again = await s2s.ok("messaging", "SYS_DELETE_MESSAGES", {"msgIds": ids})
    assert again == {"requested": 3, "actual": 0}


@pytest.mark.parametrize(
    ("data", "reason"),
    [({}, 40358), ({"msgIds": []}, 40001), ({"msgIds": "x"}, 40001), ({"msgIds": [1]}, 40001)],
    ids=["missing", "empty", "string", "int"],
)
async def test_delete_messages_validation_changes_nothing(s2s, data, reason):
    """Pins: an invalid SYS_DELETE_MESSAGES is refused and deletes nothing."""
    await send(s2s, ["p1"])
    await refused(s2s, "SYS_DELETE_MESSAGES", data, 400, reason)


async def test_sys_ops_cannot_reach_another_apps_messages(server, s2s):
    """Pins: Sys reads, updates and deletes are confined to the calling app."""
    msg_id = await send(s2s, ["p1"], {"text": "demo"})
    tight = S2S(server, app="tight")
    try:
        assert (await tight.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [msg_id]}))[
            "actual"
        ] == 0
        assert await count(tight) == 0
        status, body = await update(tight, msg_id, -1, {"text": "hijack"})
        assert_error(status, body, 400, 40595)
        status, body = await delete(tight, msg_id, -1)
        assert_error(status, body, 400, 40595)
        got = await tight.ok("messaging", "SYS_DELETE_MESSAGES", {"msgIds": [msg_id]})
        assert got == {"requested": 1, "actual": 0}
    finally:
        await tight.close()
    item = await get(s2s, msg_id)
    assert item["message"]["content"] == {"text": "demo"} and item["msgVer"] == 1
