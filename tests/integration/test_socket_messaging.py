"""Every client operation of API.md §5 (and the event operations of §4.7) over a real socket."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import orjson
import pytest

from tests.support.clients import S2S, Rtt, socket, token

SYSTEM_FROM = {"id": None, "name": "App Administrator"}


async def counts(client: Rtt) -> dict[str, Any]:
    return await client.ok("messaging", "GET_MESSAGE_COUNTS", {})


async def error(client: Rtt, service: str, operation: str, data: Any) -> dict[str, Any]:
    reply = await client.request(service, operation, data)
    assert reply["status"] != 200, reply
    assert reply["severity"] == "ERROR" and "data" not in reply, reply
    return reply


async def user_send(client: Rtt, to: list[Any], content: Any = None, **extra: Any) -> str:
    data = {"toProfileIds": to, "contentJson": content or {"text": "hi"}, **extra}
    reply = await client.ok("messaging", "SEND_MESSAGE", data)
    return str(reply["msgId"])


async def page(client: Rtt, context: dict[str, Any]) -> dict[str, Any]:
    return await client.ok("messaging", "GET_MESSAGES_PAGE", {"context": context})


def ids(result: dict[str, Any]) -> list[str]:
    return [item["msgId"] for item in result["results"]["items"]]


# --- boxes and counts ------------------------------------------------------------------------


async def test_get_message_boxes(server):
    """Fails if GET_MESSAGE_BOXES does not list inbox and sent."""
    async with socket(server, "p1") as client:
        assert await client.ok("messaging", "GET_MESSAGE_BOXES", {}) == {"items": ["inbox", "sent"]}
        # data may be omitted entirely
        assert await client.ok("messaging", "GET_MESSAGE_BOXES") == {"items": ["inbox", "sent"]}


async def test_get_message_counts_total_unread_and_sent(server, s2s):
    """Fails if inbox total/unread or the sent box count is wrong."""
    async with socket(server, "p1") as p1:
        assert await counts(p1) == {
            "inbox": {"total": 0, "unread": 0},
            "sent": {"total": 0, "unread": 0},
        }
        first = await s2s.send(["p1"])
        await s2s.send(["p1"])
        await s2s.send(["p2"])  # someone else's mail
        await user_send(p1, ["p2"])
        await user_send(p1, ["p2", "p3"])
        assert await counts(p1) == {
            "inbox": {"total": 2, "unread": 2},
            "sent": {"total": 2, "unread": 0},
        }
        await p1.ok("messaging", "MARK_MESSAGES_READ", {"msgbox": "inbox", "msgIds": [first]})
        assert (await counts(p1))["inbox"] == {"total": 2, "unread": 1}


# --- GET_MESSAGES ----------------------------------------------------------------------------


async def test_get_messages_returns_inbox_entries(server, s2s):
    """Fails if GET_MESSAGES items are not the §3 inbox entry shape, in request order."""
    a = await s2s.send(["p1", "p2"], {"n": 1})
    b = await s2s.send(["p1"], {"n": 2})
    async with socket(server, "p1") as client:
        reply = await client.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [b, a]})
    assert reply["requested"] == 2 and reply["actual"] == 2
    first, second = reply["items"]
    assert [first["msgId"], second["msgId"]] == [b, a]
    assert second["msgbox"] == "inbox" and second["read"] is False
    assert {"mbCr", "mbUp", "mbVer", "msgCr", "msgUp", "msgVer"} <= second.keys()
    assert second["mbVer"] == 1 and second["msgVer"] == 1
    assert second["message"]["from"] == SYSTEM_FROM
    assert second["message"]["to"] == ["p1"]  # a system message's recipients are private
    assert second["message"]["content"] == {"n": 1}
    assert isinstance(second["message"]["sentAt"], int)


@pytest.mark.parametrize("flag", ["markAsRead", "markMessageRead"])
async def test_get_messages_marks_read(server, s2s, flag):
    """Fails if markAsRead (or its alias markMessageRead) does not mark the entries read."""
    a = await s2s.send(["p1", "p2"])
    b = await s2s.send(["p1"])
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        plain = await p1.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [a]})
        assert plain["items"][0]["read"] is False
        assert (await counts(p1))["inbox"]["unread"] == 2  # reading alone marks nothing
        marked = await p1.ok(
            "messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [a], flag: True}
        )
        entry = marked["items"][0]
        assert entry["read"] is True and entry["mbVer"] == 2
        assert entry["mbUp"] >= entry["mbCr"]
        assert (await counts(p1))["inbox"] == {"total": 2, "unread": 1}
        # another recipient's entry of the same message is untouched
        assert (await counts(p2))["inbox"] == {"total": 1, "unread": 1}
        again = await p1.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [b]})
        assert again["items"][0]["read"] is False


async def test_get_messages_unknown_id_is_40595(server, s2s):
    """Fails if an unknown id (alone or beside a known one) is not 400/40595."""
    known = await s2s.send(["p1"])
    async with socket(server, "p1") as client:
        for msg_ids in (["nope"], [known, "nope"]):
            reply = await error(
                client, "messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": msg_ids}
            )
            assert reply["status"] == 400 and reply["reason_code"] == 40595, reply


async def test_get_messages_refused_marks_nothing(server, s2s):
    """Fails if a GET_MESSAGES refused with 40595 still marks the known entries read."""
    known = await s2s.send(["p1"])
    async with socket(server, "p1") as client:
        reply = await error(
            client,
            "messaging",
            "GET_MESSAGES",
            {"msgbox": "inbox", "msgIds": [known, "nope"], "markAsRead": True},
        )
        assert reply["reason_code"] == 40595
        assert (await counts(client))["inbox"] == {"total": 1, "unread": 1}


async def test_get_messages_is_scoped_to_caller_and_box(server, s2s):
    """Fails if a profile can read another profile's entry, or an inbox entry through `sent`."""
    theirs = await s2s.send(["p2"])
    mine = await s2s.send(["p1"])
    async with socket(server, "p1") as client:
        reply = await error(
            client, "messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [theirs]}
        )
        assert reply["reason_code"] == 40595
        reply = await error(
            client, "messaging", "GET_MESSAGES", {"msgbox": "sent", "msgIds": [mine]}
        )
        assert reply["reason_code"] == 40595


# --- GET_MESSAGES_PAGE -----------------------------------------------------------------------


async def _mailbox(s2s: S2S, p1: Rtt, p2: Rtt) -> dict[str, str]:
    """p1's mailbox: 2 system messages, 2 from p2, 1 sent by p1 to p3; one spaced ms apart."""
    made = {}
    made["sys1"] = await s2s.send(["p1"], {"k": "sys1"})
    await asyncio.sleep(0.005)
    made["p2a"] = await user_send(p2, ["p1"], {"k": "p2a"})
    await asyncio.sleep(0.005)
    made["sys2"] = await s2s.send(["p1", "p4"], {"k": "sys2"})
    await asyncio.sleep(0.005)
    made["p2b"] = await user_send(p2, ["p1", "p3"], {"k": "p2b"})
    await asyncio.sleep(0.005)
    made["sent"] = await user_send(p1, ["p3"], {"k": "sent"})
    await p1.ok("messaging", "MARK_MESSAGES_READ", {"msgbox": "inbox", "msgIds": [made["sys1"]]})
    return made


async def test_page_default_lists_both_boxes_newest_first(server, s2s):
    """Fails if an unfiltered page misses a box or is not sorted by mbCr descending."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        m = await _mailbox(s2s, p1, p2)
        result = await page(p1, {"pagination": {"rowsPerPage": 10, "pageNumber": 1}})
        assert result["results"]["count"] == 5
        assert ids(result) == [m["sent"], m["p2b"], m["sys2"], m["p2a"], m["sys1"]]
        assert result["results"]["page"] == 1
        assert result["results"]["moreAfter"] is False and result["results"]["moreBefore"] is False
        assert isinstance(result["context"], str) and result["context"]


async def test_page_sort_ascending(server, s2s):
    """Fails if sortCriteria mbCr: 1 is not honoured."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        m = await _mailbox(s2s, p1, p2)
        result = await page(
            p1, {"searchCriteria": {"msgbox": "inbox"}, "sortCriteria": {"mbCr": 1}}
        )
        assert ids(result) == [m["sys1"], m["p2a"], m["sys2"], m["p2b"]]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"msgbox": "inbox"}, ["p2b", "sys2", "p2a", "sys1"]),
        ({"msgbox": "sent"}, ["sent"]),
        ({"read": False}, ["p2b", "sys2", "p2a"]),
        ({"read": True}, ["sent", "sys1"]),
        ({"message.from.id": None}, ["sys2", "sys1"]),
        ({"message.from.id": "p2"}, ["p2b", "p2a"]),
        ({"message.from.id": "p1"}, ["sent"]),
        ({"message.to": {"$in": ["p3"]}}, ["sent", "p2b"]),
        ({"message.to": {"$in": ["p4", "nobody"]}}, ["sys2"]),
        ({"msgbox": "inbox", "read": False, "message.from.id": None}, ["sys2"]),
    ],
    ids=[
        "inbox",
        "sent",
        "unread",
        "read",
        "from-system",
        "from-p2",
        "from-self",
        "to-in",
        "to-in-partial",
        "combined",
    ],
)
async def test_page_search_criteria(server, s2s, criteria, expected):
    """Fails if a supported searchCriteria filter selects the wrong entries."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        m = await _mailbox(s2s, p1, p2)
        result = await page(p1, {"searchCriteria": criteria})
        assert ids(result) == [m[k] for k in expected]
        assert result["results"]["count"] == len(expected)


async def test_page_mbcr_range(server, s2s):
    """Fails if $gte/$lte on mbCr do not bound the results inclusively."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        m = await _mailbox(s2s, p1, p2)
        everything = await page(
            p1, {"searchCriteria": {"msgbox": "inbox"}, "sortCriteria": {"mbCr": 1}}
        )
        created = {item["msgId"]: item["mbCr"] for item in everything["results"]["items"]}
        low, high = created[m["p2a"]], created[m["p2b"]]
        assert low < created[m["sys2"]] < high  # spaced by the sleeps in _mailbox
        result = await page(
            p1,
            {
                "searchCriteria": {"msgbox": "inbox", "mbCr": {"$gte": low, "$lte": high}},
                "sortCriteria": {"mbCr": 1},
            },
        )
        assert ids(result) == [m["p2a"], m["sys2"], m["p2b"]]
        after = await page(p1, {"searchCriteria": {"mbCr": {"$gte": high + 1_000_000}}})
        assert after["results"]["count"] == 0 and after["results"]["items"] == []


async def test_page_mbup_range_finds_recently_read(server, s2s):
    """Fails if $gte on mbUp does not find entries updated (marked read) after a point."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        m = await _mailbox(s2s, p1, p2)
        await asyncio.sleep(0.01)
        entry = (
            await p1.ok(
                "messaging",
                "GET_MESSAGES",
                {"msgbox": "inbox", "msgIds": [m["p2a"]], "markAsRead": True},
            )
        )["items"][0]
        result = await page(
            p1, {"searchCriteria": {"msgbox": "inbox", "mbUp": {"$gte": entry["mbUp"]}}}
        )
        assert ids(result) == [m["p2a"]]


async def test_page_pagination_and_offset(server, s2s):
    """Fails if paging with rowsPerPage / GET_MESSAGES_PAGE_OFFSET skips or repeats entries."""
    async with socket(server, "p1") as p1:
        sent = []
        for i in range(5):
            sent.append(await s2s.send(["p1"], {"i": i}))
            await asyncio.sleep(0.003)
        newest_first = sent[::-1]
        first = await page(p1, {"pagination": {"rowsPerPage": 2, "pageNumber": 1}})
        assert ids(first) == newest_first[:2]
        assert first["results"]["count"] == 5
        assert first["results"]["moreAfter"] is True and first["results"]["moreBefore"] is False

        second = await p1.ok(
            "messaging", "GET_MESSAGES_PAGE_OFFSET", {"context": first["context"], "pageOffset": 1}
        )
        assert ids(second) == newest_first[2:4] and second["results"]["page"] == 2
        assert second["results"]["moreAfter"] is True and second["results"]["moreBefore"] is True

        third = await p1.ok(
            "messaging", "GET_MESSAGES_PAGE_OFFSET", {"context": second["context"], "pageOffset": 1}
        )
        assert ids(third) == newest_first[4:] and third["results"]["moreAfter"] is False

        back = await p1.ok(
            "messaging", "GET_MESSAGES_PAGE_OFFSET", {"context": third["context"], "pageOffset": -2}
        )
        assert ids(back) == ids(first)

        beyond = await p1.ok(
            "messaging", "GET_MESSAGES_PAGE_OFFSET", {"context": third["context"], "pageOffset": 5}
        )
        assert beyond["results"]["items"] == [] and beyond["results"]["count"] == 5


async def test_page_offset_keeps_criteria(server, s2s):
    """Fails if the opaque context forgets the searchCriteria/sortCriteria of the first page."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        m = await _mailbox(s2s, p1, p2)
        first = await page(
            p1,
            {
                "pagination": {"rowsPerPage": 1, "pageNumber": 1},
                "searchCriteria": {"message.from.id": "p2"},
                "sortCriteria": {"mbCr": 1},
            },
        )
        assert ids(first) == [m["p2a"]]
        second = await p1.ok(
            "messaging", "GET_MESSAGES_PAGE_OFFSET", {"context": first["context"], "pageOffset": 1}
        )
        assert ids(second) == [m["p2b"]] and second["results"]["count"] == 2


async def test_page_is_scoped_to_caller(server, s2s):
    """Fails if a profile's page shows entries of other profiles."""
    await s2s.send(["p2"])
    mine = await s2s.send(["p1"])
    async with socket(server, "p1") as p1:
        assert ids(await page(p1, {})) == [mine]


@pytest.mark.parametrize(
    "context",
    [
        {"searchCriteria": {"message.content.text": "x"}},
        {"searchCriteria": {"msgId": "x"}},
        {"searchCriteria": {"msgbox": {"$ne": "inbox"}}},
        {"searchCriteria": {"mbCr": {"$gt": 1}}},
        {"searchCriteria": {"mbCr": 5}},
        {"searchCriteria": {"message.to": "p1"}},
        {"searchCriteria": {"message.to": {"$in": []}}},
        {"searchCriteria": {"read": "yes"}},
        {"searchCriteria": {"msgbox": "trash"}},
        {"searchCriteria": {"$where": "1"}},
        {"searchCriteria": ["msgbox"]},
        {"sortCriteria": {"message.content": 1}},
        {"sortCriteria": {"mbCr": 2}},
    ],
    ids=[
        "content-field",
        "msgId",
        "ne",
        "gt",
        "range-field-eq",
        "to-without-in",
        "in-empty",
        "read-not-bool",
        "unknown-box",
        "where",
        "criteria-list",
        "sort-field",
        "sort-direction",
    ],
)
async def test_page_unsupported_criteria_is_40384(server, context):
    """Fails if an unsupported search/sort criterion is run instead of refused with 400/40384."""
    async with socket(server, "p1") as client:
        reply = await error(client, "messaging", "GET_MESSAGES_PAGE", {"context": context})
        assert reply["status"] == 400 and reply["reason_code"] == 40384, reply


@pytest.mark.parametrize(
    "context",
    [
        "not-a-context",
        "!!!!",
        base64.urlsafe_b64encode(b'{"scope":"box"}').decode(),
        base64.urlsafe_b64encode(b"[1,2,3]").decode(),
        base64.urlsafe_b64encode(
            orjson.dumps(
                {
                    "scope": "box",
                    "filters": [["message.content", "eq", 1]],
                    "sort": [],
                    "page": 1,
                    "rows": 10,
                }
            )
        ).decode(),
        base64.urlsafe_b64encode(
            orjson.dumps({"scope": "box", "filters": [], "sort": [], "page": 1, "rows": 100000})
        ).decode(),
        12,
        {"pagination": {}},
    ],
    ids=["text", "bad-base64", "partial", "array", "forged-filter", "huge-rows", "int", "object"],
)
async def test_page_offset_malformed_context_is_40383(server, context):
    """Fails if a malformed or forged opaque context is accepted instead of 400/40383."""
    async with socket(server, "p1") as client:
        reply = await error(
            client,
            "messaging",
            "GET_MESSAGES_PAGE_OFFSET",
            {"context": context, "pageOffset": 1},
        )
        assert reply["status"] == 400 and reply["reason_code"] == 40383, reply


async def test_page_offset_rejects_sys_context_and_negative_page(server, s2s):
    """Fails if a Sys-scope context works on a client socket, or paging before page 1 is served."""
    await s2s.send(["p1"])
    sys_page = await s2s.ok("messaging", "SYS_GET_MESSAGES_PAGE", {"context": {}})
    async with socket(server, "p1") as client:
        reply = await error(
            client,
            "messaging",
            "GET_MESSAGES_PAGE_OFFSET",
            {"context": sys_page["context"], "pageOffset": 0},
        )
        assert reply["reason_code"] == 40383
        first = await page(client, {})
        reply = await error(
            client,
            "messaging",
            "GET_MESSAGES_PAGE_OFFSET",
            {"context": first["context"], "pageOffset": -1},
        )
        assert reply["reason_code"] == 40383


@pytest.mark.parametrize(
    "pagination",
    [{"rowsPerPage": 0}, {"rowsPerPage": 101}, {"pageNumber": 0}, {"rowsPerPage": "10"}, [1]],
)
async def test_page_bad_pagination_is_refused(server, pagination):
    """Fails if impossible pagination values are served."""
    async with socket(server, "p1") as client:
        reply = await error(
            client, "messaging", "GET_MESSAGES_PAGE", {"context": {"pagination": pagination}}
        )
        assert reply["status"] == 400 and reply["reason_code"] == 40383, reply


# --- SEND_MESSAGE ----------------------------------------------------------------------------


async def test_send_message_between_profiles(server):
    """Fails if a client send does not reach the recipient as INCOMING from the sender."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        reply = await p1.ok(
            "messaging",
            "SEND_MESSAGE",
            {"toProfileIds": ["p2", "p3"], "contentJson": {"text": "hey", "n": [1, 2]}},
        )
        assert reply["requested"] == 2 and reply["actual"] == 2
        msg_id = reply["msgId"]
        [frame] = await p2.pushed(1)
        assert frame["service"] == "messaging" and frame["operation"] == "INCOMING"
        assert frame["seq"] == 1
        entry = frame["data"]
        assert entry["msgId"] == msg_id and entry["msgbox"] == "inbox" and entry["read"] is False
        assert entry["message"]["from"]["id"] == "p1"
        assert entry["message"]["to"] == ["p2", "p3"]
        assert entry["message"]["content"] == {"text": "hey", "n": [1, 2]}
        # the sender gets no stream frame for its own send
        await p1.silent(0.2)
        sent = await p1.ok("messaging", "GET_MESSAGES", {"msgbox": "sent", "msgIds": [msg_id]})
        [copy] = sent["items"]
        assert copy["msgbox"] == "sent" and copy["message"]["from"]["id"] == "p1"
        assert copy["message"]["content"] == {"text": "hey", "n": [1, 2]}
        assert (await counts(p1))["sent"] == {"total": 1, "unread": 0}
        assert (await counts(p1))["inbox"]["total"] == 0
    async with socket(server, "p3") as p3:
        got = await p3.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]})
        assert got["items"][0]["message"]["from"]["id"] == "p1"


async def test_send_message_simple(server):
    """Fails if SEND_MESSAGE_SIMPLE does not deliver {"text": …} content."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        reply = await p1.ok(
            "messaging", "SEND_MESSAGE_SIMPLE", {"toProfileIds": ["p2"], "text": "plain words"}
        )
        [frame] = await p2.pushed(1)
        assert frame["data"]["msgId"] == reply["msgId"]
        assert frame["data"]["message"]["content"] == {"text": "plain words"}
        assert frame["data"]["message"]["from"]["id"] == "p1"


async def test_send_message_sender_name_from_token(server):
    """Fails if the token's `name` claim is not used as the sender name."""
    async with (
        socket(server, "p1", tok=token("p1", name="Alice")) as p1,
        socket(server, "p2") as p2,
    ):
        await user_send(p1, ["p2"])
        [frame] = await p2.pushed(1)
        assert frame["data"]["message"]["from"] == {"id": "p1", "name": "Alice"}


async def test_send_message_too_many_recipients_is_40621(server):
    """Fails if more than max_recipients_user recipients are accepted, or anything is stored."""
    async with socket(server, "p1", app="tight") as p1, socket(server, "p2", app="tight") as p2:
        reply = await error(
            p1,
            "messaging",
            "SEND_MESSAGE",
            {"toProfileIds": ["p2", "p3", "p4"], "contentJson": {}},
        )
        assert reply["status"] == 400 and reply["reason_code"] == 40621, reply
        await p2.silent(0.2)
        assert (await counts(p1))["sent"]["total"] == 0
        assert (await counts(p2))["inbox"]["total"] == 0
        # exactly the limit is fine
        await user_send(p1, ["p2", "p3"])
        assert (await counts(p2))["inbox"]["total"] == 1


async def test_send_message_default_recipient_limit_is_5(server):
    """Fails if the default app allows more than 5 recipients per client send."""
    async with socket(server, "p1") as p1:
        reply = await error(
            p1,
            "messaging",
            "SEND_MESSAGE_SIMPLE",
            {"toProfileIds": [f"u{i}" for i in range(6)], "text": "x"},
        )
        assert reply["reason_code"] == 40621
        await user_send(p1, [f"u{i}" for i in range(5)])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"contentJson": {}}, 40358),
        ({"toProfileIds": ["p2"]}, 40358),
        ({"toProfileIds": [], "contentJson": {}}, 40001),
        ({"toProfileIds": "p2", "contentJson": {}}, 40001),
        ({"toProfileIds": [7], "contentJson": {}}, 40001),
        ({"toProfileIds": ["p2"], "contentJson": "text"}, 40001),
    ],
    ids=["no-to", "no-content", "empty-to", "to-string", "to-int", "content-string"],
)
async def test_send_message_validation(server, data, reason):
    """Fails if a malformed client send is accepted, or stored."""
    async with socket(server, "p1") as p1:
        reply = await error(p1, "messaging", "SEND_MESSAGE", data)
        assert reply["status"] == 400 and reply["reason_code"] == reason, reply
        assert (await counts(p1))["sent"]["total"] == 0


async def test_send_message_content_too_large_is_40600(server):
    """Fails if content over the app's max_content_bytes (256 on `tight`) is accepted."""
    async with socket(server, "p1", app="tight") as p1:
        reply = await error(
            p1,
            "messaging",
            "SEND_MESSAGE",
            {"toProfileIds": ["p2"], "contentJson": {"x": "y" * 300}},
        )
        assert reply["reason_code"] == 40600
        assert (await counts(p1))["sent"]["total"] == 0


async def test_send_message_isolated_per_app(server):
    """Fails if a client send in one app reaches the same profileId in another app."""
    async with socket(server, "p1", app="tight") as tight, socket(server, "p2") as demo:
        await user_send(tight, ["p2"])
        await demo.silent(0.3)
        assert (await counts(demo))["inbox"]["total"] == 0


# --- MARK_MESSAGES_READ / DELETE_MESSAGES ----------------------------------------------------


async def test_mark_messages_read(server, s2s):
    """Fails if MARK_MESSAGES_READ miscounts (unknown ids count 0) or marks nothing."""
    a = await s2s.send(["p1"])
    b = await s2s.send(["p1"])
    theirs = await s2s.send(["p2"])
    async with socket(server, "p1") as p1:
        reply = await p1.ok(
            "messaging",
            "MARK_MESSAGES_READ",
            {"msgbox": "inbox", "msgIds": [a, "unknown", theirs]},
        )
        assert reply == {"requested": 3, "actual": 1}
        assert (await counts(p1))["inbox"] == {"total": 2, "unread": 1}
        got = await p1.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [a, b]})
        assert [i["read"] for i in got["items"]] == [True, False]
        none = await p1.ok("messaging", "MARK_MESSAGES_READ", {"msgbox": "inbox", "msgIds": ["x"]})
        assert none == {"requested": 1, "actual": 0}
    async with socket(server, "p2") as p2:
        assert (await counts(p2))["inbox"]["unread"] == 1  # p1 could not mark p2's entry


async def test_delete_messages_removes_only_callers_entry(server, s2s):
    """Fails if a user delete removes other recipients' or the sender's copies."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2, socket(server, "p3") as p3:
        msg_id = await user_send(p1, ["p2", "p3"])
        other = await s2s.send(["p2"])
        reply = await p2.ok(
            "messaging", "DELETE_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id, "unknown"]}
        )
        assert reply == {"requested": 2, "actual": 1}
        assert (await counts(p2))["inbox"]["total"] == 1
        gone = await error(p2, "messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]})
        assert gone["reason_code"] == 40595
        still = await p2.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [other]})
        assert still["actual"] == 1
        # p3's inbox entry and p1's sent entry are untouched
        assert (await p3.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]}))[
            "actual"
        ] == 1
        assert (await p1.ok("messaging", "GET_MESSAGES", {"msgbox": "sent", "msgIds": [msg_id]}))[
            "actual"
        ] == 1
        # the sender deleting its sent copy leaves the recipients' copies
        assert (
            await p1.ok("messaging", "DELETE_MESSAGES", {"msgbox": "sent", "msgIds": [msg_id]})
        )["actual"] == 1
        assert (await counts(p1))["sent"]["total"] == 0
        assert (await counts(p3))["inbox"]["total"] == 1
        # deleting someone else's message is a no-op
        assert (
            await p1.ok("messaging", "DELETE_MESSAGES", {"msgbox": "inbox", "msgIds": [other]})
        )["actual"] == 0
        assert (await counts(p2))["inbox"]["total"] == 1


async def test_delete_messages_wrong_box_counts_zero(server, s2s):
    """Fails if DELETE_MESSAGES ignores the msgbox it is given."""
    msg_id = await s2s.send(["p1"])
    async with socket(server, "p1") as p1:
        reply = await p1.ok("messaging", "DELETE_MESSAGES", {"msgbox": "sent", "msgIds": [msg_id]})
        assert reply == {"requested": 1, "actual": 0}
        assert (await counts(p1))["inbox"]["total"] == 1


# --- events ----------------------------------------------------------------------------------


async def _events(s2s: S2S, to: list[str], event_type: str, data: dict[str, Any]) -> None:
    reply = await s2s.ok(
        "event",
        "SYS_SEND_EVENT_TO_PROFILES",
        {"toIds": to, "eventType": event_type, "eventData": data, "fromProfileId": "boss"},
    )
    assert reply["sentCount"] == len(to)


async def test_get_events(server, s2s):
    """Fails if GET_EVENTS misses a stored event or returns another profile's."""
    async with socket(server, "p1") as p1:
        await _events(s2s, ["p1", "p2"], "invite", {"room": 1})
        await _events(s2s, ["p1"], "kick", {"room": 2})
        frames = await p1.pushed(2)
        assert [f["data"]["eventType"] for f in frames] == ["invite", "kick"]
        got = await p1.ok("event", "GET_EVENTS", {})
        events = got["incoming_events"]
        assert [e["eventType"] for e in events] == ["invite", "kick"]
        assert [e["evId"] for e in events] == [f["data"]["evId"] for f in frames]
        first = events[0]
        assert first["fromPlayerId"] == "boss" and first["toPlayerId"] == "p1"
        assert first["eventData"] == {"room": 1} and isinstance(first["createdAt"], int)
    async with socket(server, "p2") as p2:
        events = (await p2.ok("event", "GET_EVENTS", {}))["incoming_events"]
        assert [(e["eventType"], e["toPlayerId"]) for e in events] == [("invite", "p2")]


async def test_delete_incoming(server, s2s):
    """Fails if DELETE_INCOMING does not remove exactly the caller's event."""
    await _events(s2s, ["p1", "p2"], "a", {})
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        [mine] = (await p1.ok("event", "GET_EVENTS"))["incoming_events"]
        [theirs] = (await p2.ok("event", "GET_EVENTS"))["incoming_events"]
        assert (await p1.ok("event", "DELETE_INCOMING", {"evId": theirs["evId"]}))["actual"] == 0
        assert (await p1.ok("event", "DELETE_INCOMING", {"evId": mine["evId"]}))["actual"] == 1
        assert (await p1.ok("event", "DELETE_INCOMING", {"evId": mine["evId"]}))["actual"] == 0
        assert (await p1.ok("event", "GET_EVENTS"))["incoming_events"] == []
        assert len((await p2.ok("event", "GET_EVENTS"))["incoming_events"]) == 1
        reply = await error(p1, "event", "DELETE_INCOMING", {})
        assert reply["reason_code"] == 40358


async def test_delete_incoming_events(server, s2s):
    """Fails if DELETE_INCOMING_EVENTS miscounts or deletes the wrong events."""
    for i in range(3):
        await _events(s2s, ["p1"], f"e{i}", {"i": i})
    async with socket(server, "p1") as p1:
        events = (await p1.ok("event", "GET_EVENTS"))["incoming_events"]
        assert len(events) == 3
        reply = await p1.ok(
            "event",
            "DELETE_INCOMING_EVENTS",
            {"evIds": [events[0]["evId"], events[2]["evId"], "unknown"]},
        )
        assert reply == {"requested": 3, "actual": 2}
        left = (await p1.ok("event", "GET_EVENTS"))["incoming_events"]
        assert [e["eventType"] for e in left] == ["e1"]


# --- sys operations are not for clients ------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "operation", "data"),
    [
        (
            "messaging",
            "SYS_SEND_MESSAGE",
            {"toProfileIds": ["p2"], "contentJson": {}, "fromJson": SYSTEM_FROM},
        ),
        (
            "messaging",
            "SYS_SEND_MESSAGE_SIMPLE",
            {"toProfileIds": ["p2"], "text": "x", "fromJson": SYSTEM_FROM},
        ),
        ("messaging", "SYS_GET_MESSAGES", {"msgIds": ["x"]}),
        ("messaging", "SYS_GET_MESSAGES_PAGE", {"context": {}}),
        ("messaging", "SYS_DELETE_MESSAGES", {"msgIds": ["x"]}),
        ("event", "SYS_SEND_EVENT_TO_PROFILES", {"toIds": ["p2"], "eventType": "x"}),
        ("event", "SYS_SEND_RTT_ONLY", {"toId": "p2", "eventType": "x"}),
        ("presence", "SYS_GET_ONLINE", {"profileIds": ["p2"]}),
        ("push", "SYS_GET_PENDING", {}),
        ("rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", {"profileId": "p2"}),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
async def test_sys_operations_refused_from_client(server, service, operation, data):
    """Fails if a client socket can run a server-only (Sys) operation."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        reply = await error(p1, service, operation, data)
        assert reply["status"] == 403 and reply["reason_code"] == 40304, reply
        await p2.silent(0.2)
        assert (await counts(p2))["inbox"]["total"] == 0
        assert (await p2.ok("event", "GET_EVENTS"))["incoming_events"] == []


async def test_sys_update_and_delete_refused_from_client(server):
    """Fails if a client can edit or delete a message for everybody."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        msg_id = await user_send(p1, ["p2"])
        await p2.pushed(1)
        for operation, data in (
            ("SYS_UPDATE_MESSAGE", {"msgId": msg_id, "msgVer": -1, "contentJson": {"x": 1}}),
            ("SYS_DELETE_MESSAGE", {"msgId": msg_id, "msgVer": -1}),
        ):
            reply = await error(p1, "messaging", operation, data)
            assert reply["status"] == 403 and reply["reason_code"] == 40304
        got = await p2.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [msg_id]})
        assert got["items"][0]["msgVer"] == 1
        assert got["items"][0]["message"]["content"] == {"text": "hi"}
        await p2.silent(0.2)


# --- system channels are read-only -----------------------------------------------------------


async def _nothing_stored(sender: Rtt, recipient: Rtt) -> None:
    await recipient.silent(0.2)
    assert (await counts(recipient))["inbox"]["total"] == 0
    assert (await counts(sender))["sent"]["total"] == 0


@pytest.mark.parametrize(
    "to",
    [["System"], [None], ["p2", "System"], ["p2", None]],
    ids=["System", "null", "mixed-System", "mixed-null"],
)
@pytest.mark.parametrize("operation", ["SEND_MESSAGE", "SEND_MESSAGE_SIMPLE"])
async def test_send_to_system_identity_is_40640(server, to, operation):
    """Fails if a client can send to a system identity (or slips a user recipient past it)."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        data = {"toProfileIds": to, "contentJson": {"t": 1}, "text": "t"}
        reply = await error(p1, "messaging", operation, data)
        assert reply["status"] == 403 and reply["reason_code"] == 40640, reply
        assert "SYSTEM_CHANNEL_READ_ONLY" in reply["status_message"]
        await _nothing_stored(p1, p2)


async def test_send_to_system_identity_refused_over_recipient_limit(server):
    """Fails if a null recipient in an oversized list is accepted or anything is stored."""
    async with socket(server, "p1", app="tight") as p1, socket(server, "p2", app="tight") as p2:
        reply = await error(
            p1,
            "messaging",
            "SEND_MESSAGE",
            {"toProfileIds": ["p2", "p3", None], "contentJson": {}},
        )
        assert reply["reason_code"] in (40640, 40621), reply
        await _nothing_stored(p1, p2)


async def test_reply_to_system_message_is_40640(server, s2s):
    """Fails if a client can reply (replyTo) to a system message."""
    system_msg = await s2s.send(["p1", "p2"])
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        for operation, extra in (
            ("SEND_MESSAGE", {"contentJson": {"re": 1}}),
            ("SEND_MESSAGE_SIMPLE", {"text": "re"}),
        ):
            reply = await error(
                p1,
                "messaging",
                operation,
                {"toProfileIds": ["p2"], "replyTo": system_msg, **extra},
            )
            assert reply["status"] == 403 and reply["reason_code"] == 40640, reply
        await p2.silent(0.2)
        assert (await counts(p2))["inbox"]["total"] == 1  # only the system message itself
        assert (await counts(p1))["sent"]["total"] == 0


async def test_reply_to_user_message_is_allowed(server):
    """Fails if replyTo naming a user message is refused or not carried to the recipient."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        original = await user_send(p1, ["p2"], {"q": "lunch?"})
        await p2.pushed(1)
        reply = await p2.ok(
            "messaging",
            "SEND_MESSAGE",
            {"toProfileIds": ["p1"], "contentJson": {"a": "yes"}, "replyTo": original},
        )
        [frame] = await p1.pushed(1)
        assert frame["data"]["msgId"] == reply["msgId"]
        assert frame["data"]["message"]["replyTo"] == original
        assert frame["data"]["message"]["from"]["id"] == "p2"
        assert (await counts(p2))["sent"]["total"] == 1


async def test_reply_to_unknown_message_is_refused(server):
    """Fails if replyTo naming no message is accepted (and stored)."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        reply = await error(
            p1,
            "messaging",
            "SEND_MESSAGE",
            {"toProfileIds": ["p2"], "contentJson": {}, "replyTo": "no-such-message"},
        )
        assert reply["status"] == 400 and reply["reason_code"] == 40595, reply
        await _nothing_stored(p1, p2)


async def test_reply_to_another_apps_system_message_is_unknown(server):
    """Fails if replyTo can name a message of another app."""
    tight = S2S(server, app="tight")
    try:
        foreign = await tight.send(["p1"])
    finally:
        await tight.close()
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        reply = await error(
            p1,
            "messaging",
            "SEND_MESSAGE",
            {"toProfileIds": ["p2"], "contentJson": {}, "replyTo": foreign},
        )
        assert reply["reason_code"] == 40595
        await _nothing_stored(p1, p2)


async def test_system_recipients_are_private_but_profile_recipients_are_not(server, s2s):
    """Fails if a system broadcast tells each recipient who else got it (a privacy leak), or if
    a profile's message hides its other recipients the way e-mail would not."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        msg_id = await s2s.send(["p1", "p2", "p3"])
        [one] = await p1.pushed(1)
        [two] = await p2.pushed(1)
        assert one["data"]["message"]["to"] == ["p1"]
        assert two["data"]["message"]["to"] == ["p2"]
        [item] = (await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [msg_id]}))["items"]
        assert item["message"]["to"] == ["p1", "p2", "p3"]
        sent = await p1.ok(
            "messaging", "SEND_MESSAGE", {"toProfileIds": ["p2", "p4"], "contentJson": {"x": 1}}
        )
        [mine] = await p2.pushed(1)
        assert mine["data"]["msgId"] == sent["msgId"]
        assert mine["data"]["message"]["to"] == ["p2", "p4"]
