"""POST /s2sdispatcher envelope (API.md §2, §6): both forms, sessions, auth, idempotency, refusals.

Every test drives a real node over loopback HTTP (and RTT sockets where a push must be seen),
and checks the store through the S2S API itself, so "performs nothing" means nothing observable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.clients import S2S, SERVER, SERVERS, socket
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for

AUTH = {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": dict(SERVER)}
SYSTEM_FROM = {"id": None, "name": "App Administrator"}


def op(service: str, operation: str, data: Any = None) -> dict[str, Any]:
    return {"service": service, "operation": operation, "data": data}


def send_op(to: list[str], text: str = "hello") -> dict[str, Any]:
    return op(
        "messaging",
        "SYS_SEND_MESSAGE",
        {"toProfileIds": to, "contentJson": {"text": text}, "fromJson": SYSTEM_FROM},
    )


async def message_count(s2s: S2S, criteria: dict[str, Any] | None = None) -> int:
    """How many messages the app stores (optionally matching sys searchCriteria)."""
    context: dict[str, Any] = {"pagination": {"rowsPerPage": 1, "pageNumber": 1}}
    if criteria is not None:
        context["searchCriteria"] = criteria
    data = await s2s.ok("messaging", "SYS_GET_MESSAGES_PAGE", {"context": context})
    return int(data["results"]["count"])


async def pending(s2s: S2S, profile: str | None = None) -> list[dict[str, Any]]:
    data: dict[str, Any] = {"limit": 1000}
    if profile is not None:
        data["profileId"] = profile
    return list((await s2s.ok("push", "SYS_GET_PENDING", data))["items"])


async def open_session(s2s: S2S, creds: dict[str, Any] | None = None) -> str:
    status, body = await s2s.raw({"packetId": 0, "messages": [{**AUTH, "data": creds or SERVER}]})
    assert status == 200, body
    assert body["packetId"] == 0
    [auth] = body["messageResponses"]
    assert auth["status"] == 200, auth
    return str(auth["data"]["sessionId"])


async def packet(
    s2s: S2S, session_id: Any, packet_id: Any, messages: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    return await s2s.raw(
        {"packetId": packet_id, "sessionId": session_id, "messages": messages}, headers
    )


def assert_error(body: Any, status: int, reason: int) -> None:
    """A brainCloud error object (API.md §6)."""
    assert body["status"] == status, body
    assert body["reason_code"] == reason, body
    assert isinstance(body["status_message"], str) and body["status_message"], body
    assert body["severity"] == "ERROR", body


def assert_packet_refused(
    status: int, body: Any, http: int, reason: int, packet_id: Any = None, count: int | None = None
) -> None:
    """A whole packet refused: `http`, and every message answered with the same error."""
    assert status == http, body
    if packet_id is not None:
        assert body["packetId"] == packet_id, body
    if count is not None:
        assert len(body["messageResponses"]) == count, body
    for response in body["messageResponses"]:
        assert_error(response, http, reason)


@pytest.fixture
async def short_session_server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running(settings_for(tmp_path, s2s_session_seconds=1.0)) as node:
        yield node


# --- stateless form ------------------------------------------------------------------------


async def test_stateless_call_returns_the_operation_response(s2s):
    """Pins: the stateless form answers {"status":200,"data":{…}} and really performs the op."""
    status, body = await s2s.call(
        "messaging",
        "SYS_SEND_MESSAGE",
        {"toProfileIds": ["p1"], "contentJson": {"text": "hi"}, "fromJson": SYSTEM_FROM},
    )
    assert status == 200
    assert set(body) == {"status", "data"}
    assert body["status"] == 200
    assert set(body["data"]) == {"msgId"}
    msg_id = body["data"]["msgId"]
    assert isinstance(msg_id, str) and msg_id
    got = await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [msg_id]})
    assert got["actual"] == 1
    assert got["items"][0]["message"]["content"] == {"text": "hi"}


async def test_stateless_error_is_a_braincloud_error_object(s2s):
    """Pins: an operation error answers the §6 error object with the same HTTP status."""
    status, body = await s2s.call(
        "messaging", "SYS_SEND_MESSAGE", {"toProfileIds": ["p1"], "fromJson": SYSTEM_FROM}
    )
    assert status == 400
    assert set(body) == {"status", "reason_code", "status_message", "severity"}
    assert_error(body, 400, 40358)
    assert await message_count(s2s) == 0


async def test_stateless_heartbeat_is_accepted(s2s):
    """Pins: heartbeat/HEARTBEAT is a valid S2S operation (it answers 200, `"data": null`)."""
    assert await s2s.ok("heartbeat", "HEARTBEAT", None) is None


async def test_data_that_is_not_an_object_is_invalid(s2s):
    """Pins: a non-object `data` is 400/40001, not a crash or a silent default."""
    for data in ("x", [1], 5, True):
        status, body = await s2s.call("messaging", "SYS_GET_MESSAGES", data)
        assert status == 400, (data, body)
        assert_error(body, 400, 40001)


# --- session form --------------------------------------------------------------------------


async def test_authenticate_opens_a_session(server, s2s):
    """Pins: packet 0 with AUTHENTICATE answers sessionId + heartbeatSeconds in messageResponses."""
    status, body = await s2s.raw({"packetId": 0, "messages": [AUTH]})
    assert status == 200
    assert set(body) == {"packetId", "messageResponses"}
    assert body["packetId"] == 0
    [auth] = body["messageResponses"]
    assert auth["status"] == 200
    assert set(auth["data"]) == {"sessionId", "heartbeatSeconds"}
    assert isinstance(auth["data"]["sessionId"], str) and auth["data"]["sessionId"]
    heartbeat = auth["data"]["heartbeatSeconds"]
    assert isinstance(heartbeat, int)
    assert 0 < heartbeat < server.settings.s2s_session_seconds


async def test_two_authentications_give_distinct_sessions(s2s):
    """Pins: each AUTHENTICATE opens its own session (ids are not reused)."""
    assert await open_session(s2s) != await open_session(s2s)


async def test_session_packet_answers_every_message_in_order(s2s):
    """Pins: messageResponses has one answer per message, in request order, errors inline."""
    session = await open_session(s2s)
    messages = [
        send_op(["p1"], "one"),
        op("nope", "NOPE", {}),
        send_op(["p2"], "two"),
        op("presence", "SYS_GET_ONLINE", {"profileIds": ["p1"]}),
        op("messaging", "SYS_GET_MESSAGES", {}),
    ]
    status, body = await packet(s2s, session, 1, messages)
    assert status == 200
    assert body["packetId"] == 1
    first, unknown, second, online, missing = body["messageResponses"]
    assert first["status"] == 200 and second["status"] == 200
    assert_error(unknown, 400, 40001)
    assert online == {"status": 200, "data": {"online": {"p1": False}}}
    assert_error(missing, 400, 40358)
    ids = [first["data"]["msgId"], second["data"]["msgId"]]
    got = await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": ids})
    assert [i["message"]["content"]["text"] for i in got["items"]] == ["one", "two"]
    assert [i["message"]["to"] for i in got["items"]] == [["p1"], ["p2"]]


async def test_authenticate_packet_may_carry_operations(s2s):
    """Pins: operations after AUTHENTICATE in packet 0 run, answered after the auth response."""
    status, body = await s2s.raw({"packetId": 0, "messages": [AUTH, send_op(["p1"])]})
    assert status == 200
    auth, sent = body["messageResponses"]
    assert "sessionId" in auth["data"]
    assert sent["status"] == 200 and sent["data"]["msgId"]
    assert await message_count(s2s) == 1


async def test_successive_packets_all_run(s2s):
    """Pins: packets 1, 2, 3 of one session each perform their operations."""
    session = await open_session(s2s)
    for n in (1, 2, 3):
        status, body = await packet(s2s, session, n, [send_op(["p1"], f"m{n}")])
        assert status == 200 and body["packetId"] == n
        assert body["messageResponses"][0]["status"] == 200
    assert await message_count(s2s) == 3


async def test_resent_last_packet_returns_cached_responses_and_sends_nothing(server, s2s):
    """Pins: a retried packet is not performed twice (no duplicate store, push entry or frame)."""
    session = await open_session(s2s)
    async with socket(server, "live") as live:
        status, first = await packet(s2s, session, 1, [send_op(["live", "away"], "once")])
        assert status == 200
        status, again = await packet(s2s, session, 1, [send_op(["live", "away"], "once")])
        assert status == 200
        assert again == first
        [frame] = await live.pushed(1)
        assert frame["data"]["msgId"] == first["messageResponses"][0]["data"]["msgId"]
        await live.silent(0.3)
    assert await message_count(s2s) == 1
    assert await message_count(s2s, {"message.to": {"$in": ["away"]}}) == 1
    assert len(await pending(s2s, "away")) == 1


async def test_resent_packet_with_other_messages_still_answers_the_cache(s2s):
    """Pins: the replay is keyed on packetId alone, so a resend never runs new operations."""
    session = await open_session(s2s)
    _, first = await packet(s2s, session, 1, [send_op(["p1"], "first")])
    status, again = await packet(s2s, session, 1, [send_op(["p1"], "other"), send_op(["p2"])])
    assert status == 200
    assert again == first
    assert await message_count(s2s) == 1


async def test_replayed_authenticate_packet_answers_its_cached_response(s2s):
    """Pins: resending packet 0 on the session replays the AUTHENTICATE answer, runs nothing."""
    status, opened = await s2s.raw({"packetId": 0, "messages": [AUTH, send_op(["p1"])]})
    assert status == 200
    session = opened["messageResponses"][0]["data"]["sessionId"]
    status, again = await packet(s2s, session, 0, [AUTH, send_op(["p1"])])
    assert status == 200
    assert again == opened
    assert await message_count(s2s) == 1


async def test_concurrent_resends_of_one_packet_run_it_once(s2s):
    """Pins: a packet retried while the first attempt is in flight is still performed once."""
    rounds = 4
    for _ in range(rounds):  # several sessions, so a race shows up reliably
        session = await open_session(s2s)
        results = await asyncio.gather(
            *(packet(s2s, session, 1, [send_op(["p1", "p2"], "race")]) for _ in range(6))
        )
        assert all(status == 200 for status, _ in results), results
        bodies = [body for _, body in results]
        assert all(body == bodies[0] for body in bodies), bodies
    assert await message_count(s2s) == rounds
    assert len(await pending(s2s, "p1")) == rounds


async def test_older_packet_id_is_refused_and_not_run(s2s):
    """Pins: a packetId below the last one is refused (400/40001) and performs nothing."""
    session = await open_session(s2s)
    await packet(s2s, session, 1, [send_op(["p1"])])
    await packet(s2s, session, 2, [send_op(["p1"])])
    status, body = await packet(s2s, session, 1, [send_op(["p1"]), send_op(["p2"])])
    assert_packet_refused(status, body, 400, 40001, packet_id=1, count=2)
    assert await message_count(s2s) == 2


@pytest.mark.parametrize(
    "packet_id",
    [-1, "1", 1.5, True, None],
    ids=["negative", "string", "float", "bool", "null"],
)
async def test_bad_packet_id_is_refused(s2s, packet_id):
    """Pins: packetId must be a non-negative integer (400/40001), and nothing runs."""
    session = await open_session(s2s)
    status, body = await packet(s2s, session, packet_id, [send_op(["p1"])])
    assert status == 400
    assert_error(body["messageResponses"][0], 400, 40001)
    assert await message_count(s2s) == 0


@pytest.mark.parametrize("messages", [[], "x", None, [send_op(["p1"])] * 51])
async def test_bad_message_list_is_refused(s2s, messages):
    """Pins: messages must be a list of 1..50 operations; otherwise 400/40001 and nothing runs."""
    session = await open_session(s2s)
    status, body = await packet(s2s, session, 1, messages)
    assert_packet_refused(status, body, 400, 40001)
    assert await message_count(s2s) == 0


async def test_non_object_message_in_a_packet_is_answered_inline(s2s):
    """Pins: one malformed entry of a packet is answered 40001 without aborting the others."""
    session = await open_session(s2s)
    status, body = await packet(s2s, session, 1, ["junk", send_op(["p1"])])
    assert status == 200
    bad, good = body["messageResponses"]
    assert_error(bad, 400, 40001)
    assert good["status"] == 200
    assert await message_count(s2s) == 1


async def test_heartbeat_keeps_a_session_alive(short_session_server):
    """Pins: heartbeat/HEARTBEAT extends the session, and silence past its lifetime ends it."""
    s2s = S2S(short_session_server)
    try:
        session = await open_session(s2s)
        packet_id = 0
        deadline = time.monotonic() + 2.2  # more than twice the 1 s session lifetime
        while time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            packet_id += 1
            status, body = await packet(
                s2s, session, packet_id, [op("heartbeat", "HEARTBEAT", None)]
            )
            assert status == 200, body
            assert body["messageResponses"] == [{"status": 200, "data": None}]
        packet_id += 1
        status, body = await packet(s2s, session, packet_id, [send_op(["p1"])])
        assert status == 200 and body["messageResponses"][0]["status"] == 200
        await asyncio.sleep(1.4)
        packet_id += 1
        status, body = await packet(s2s, session, packet_id, [send_op(["p1"])])
        assert status == 403
        assert_error(body["messageResponses"][0], 403, 40365)
        assert await message_count(s2s) == 1
    finally:
        await s2s.close()


async def test_expired_session_answers_40365_and_runs_nothing(tmp_path):
    """Pins: a session past s2s_session_seconds is refused with 40365 and performs nothing."""
    async with running(settings_for(tmp_path, s2s_session_seconds=0.5)) as node:
        s2s = S2S(node)
        try:
            session = await open_session(s2s)
            status, body = await packet(s2s, session, 1, [send_op(["p1"])])
            assert status == 200 and body["messageResponses"][0]["status"] == 200
            await asyncio.sleep(0.8)
            status, body = await packet(s2s, session, 2, [send_op(["p1"]), send_op(["p2"])])
            assert_packet_refused(status, body, 403, 40365, packet_id=2, count=2)
            # the cached packet is gone with the session, too
            status, body = await packet(s2s, session, 1, [send_op(["p1"])])
            assert_error(body["messageResponses"][0], 403, 40365)
            assert await message_count(s2s) == 1
        finally:
            await s2s.close()


@pytest.mark.parametrize(
    "session_id",
    ["0123456789abcdef0123456789abcdef", "", 5, ["x"], "x" * 100],
    ids=["unknown", "empty", "int", "list", "too-long"],
)
async def test_unknown_session_answers_40365(s2s, session_id):
    """Pins: a packet naming no live session is refused with 40365 and performs nothing."""
    status, body = await packet(s2s, session_id, 1, [send_op(["p1"])])
    assert status == 403
    assert body["packetId"] == 1
    assert_error(body["messageResponses"][0], 403, 40365)
    assert await message_count(s2s) == 0


async def test_session_is_bound_to_its_app(server, s2s):
    """Pins: a session opened by app `tight` never sees or touches app `demo`'s messages."""
    demo_msg = await s2s.send(["p1"])
    tight = S2S(server, app="tight")
    try:
        creds = {"appId": "tight", "serverName": "backend", "serverSecret": SERVERS["tight"]}
        session = await open_session(tight, creds)
        status, body = await packet(
            tight,
            session,
            1,
            [
                op("messaging", "SYS_GET_MESSAGES", {"msgIds": [demo_msg]}),
                op("messaging", "SYS_DELETE_MESSAGE", {"msgId": demo_msg, "msgVer": -1}),
            ],
        )
        assert status == 200
        got, deleted = body["messageResponses"]
        assert got["data"] == {"requested": 1, "actual": 0, "items": []}
        assert_error(deleted, 400, 40595)
    finally:
        await tight.close()
    assert (await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [demo_msg]}))["actual"] == 1


# --- credentials ---------------------------------------------------------------------------

BAD_CREDENTIALS = [
    {**SERVER, "appId": "nope"},
    {**SERVER, "serverName": "nope"},
    {**SERVER, "serverSecret": "wrong"},
    {**SERVER, "serverSecret": SERVERS["tight"]},  # another app's secret
    {**SERVER, "appId": "tight"},  # the right secret for another app
    {**SERVER, "serverSecret": ""},
    {**SERVER, "serverSecret": None},
    {**SERVER, "serverSecret": 5},
    {"appId": "demo", "serverName": "backend"},
    {"serverName": "backend", "serverSecret": "server-secret"},
    {**SERVER, "appId": ["demo"]},
    {**SERVER, "serverName": {"backend": 1}},
]
BAD_IDS = [
    "unknown-app",
    "unknown-server",
    "wrong-secret",
    "other-apps-secret",
    "other-app",
    "empty-secret",
    "null-secret",
    "int-secret",
    "no-secret",
    "no-app",
    "list-app",
    "object-server",
]


@pytest.mark.parametrize("creds", BAD_CREDENTIALS, ids=BAD_IDS)
async def test_stateless_bad_credentials_are_403_40304(s2s, creds):
    """Pins: wrong or unknown appId/serverName/serverSecret is 403/40304 and nothing runs."""
    status, body = await s2s.raw({**creds, **send_op(["p1"])})
    assert status == 403
    assert_error(body, 403, 40304)
    assert await message_count(s2s) == 0


async def test_stateless_bad_credentials_win_over_a_bad_request(s2s):
    """Pins: credentials are checked before anything else is read (40304, not 40001/40358)."""
    for message in (op("nope", "NOPE", "garbage"), op("messaging", "SYS_SEND_MESSAGE", {})):
        status, body = await s2s.raw({**SERVER, "serverSecret": "wrong", **message})
        assert status == 403
        assert_error(body, 403, 40304)


@pytest.mark.parametrize("creds", BAD_CREDENTIALS, ids=BAD_IDS)
async def test_session_bad_credentials_are_403_40304(s2s, creds):
    """Pins: AUTHENTICATE with bad credentials is 403/40304, opens nothing, runs nothing after."""
    status, body = await s2s.raw(
        {"packetId": 0, "messages": [{**AUTH, "data": creds}, send_op(["p1"])]}
    )
    assert_packet_refused(status, body, 403, 40304, packet_id=0, count=2)
    assert all("data" not in response for response in body["messageResponses"])
    assert await message_count(s2s) == 0


@pytest.mark.parametrize(
    "first",
    [send_op(["p1"]), {**AUTH, "operation": "LOGIN"}, {**AUTH, "data": None}, "AUTHENTICATE"],
    ids=["no-auth", "other-operation", "no-data", "not-an-object"],
)
async def test_session_without_authenticate_is_403_40304(s2s, first):
    """Pins: a packet without sessionId must start with AUTHENTICATE; otherwise 403/40304."""
    status, body = await s2s.raw({"packetId": 0, "messages": [first, send_op(["p1"])]})
    assert_packet_refused(status, body, 403, 40304)
    assert await message_count(s2s) == 0


# --- Idempotency-Key -----------------------------------------------------------------------


async def test_idempotency_key_retry_returns_first_response_and_creates_nothing(s2s):
    """Pins: a retry with the same Idempotency-Key answers the first msgId and stores nothing."""
    data = {"toProfileIds": ["p1"], "contentJson": {"text": "once"}, "fromJson": SYSTEM_FROM}
    headers = {"Idempotency-Key": "order-17"}
    status, first = await s2s.call("messaging", "SYS_SEND_MESSAGE", data, headers)
    assert status == 200
    for _ in range(3):
        status, again = await s2s.call("messaging", "SYS_SEND_MESSAGE", data, headers)
        assert status == 200
        assert again == first
    assert await message_count(s2s) == 1
    assert len(await pending(s2s, "p1")) == 1


async def test_idempotency_key_concurrent_retries_create_one_message(server, s2s):
    """Pins: simultaneous retries with one key wait for the first: one message, one answer."""
    data = {"toProfileIds": ["live", "p1"], "contentJson": {"n": 1}, "fromJson": SYSTEM_FROM}
    headers = {"Idempotency-Key": "burst"}
    async with socket(server, "live") as live:
        results = await asyncio.gather(
            *(s2s.call("messaging", "SYS_SEND_MESSAGE", data, headers) for _ in range(8))
        )
        assert all(status == 200 for status, _ in results), results
        msg_ids = {body["data"]["msgId"] for _, body in results}
        assert len(msg_ids) == 1
        [frame] = await live.pushed(1)
        assert frame["data"]["msgId"] in msg_ids
        await live.silent(0.3)
    assert await message_count(s2s) == 1
    assert len(await pending(s2s, "p1")) == 1


async def test_distinct_idempotency_keys_are_distinct_sends(s2s):
    """Pins: the key, not the body, identifies a retry: two keys make two messages."""
    data = {"toProfileIds": ["p1"], "contentJson": {"text": "x"}, "fromJson": SYSTEM_FROM}
    _, a = await s2s.call("messaging", "SYS_SEND_MESSAGE", data, {"Idempotency-Key": "a"})
    _, b = await s2s.call("messaging", "SYS_SEND_MESSAGE", data, {"Idempotency-Key": "b"})
    assert a["data"]["msgId"] != b["data"]["msgId"]
    assert await message_count(s2s) == 2


async def test_idempotency_key_is_scoped_to_the_app(server, s2s):
    """Pins: one key used by two apps is two sends; app B never gets app A's cached answer."""
    headers = {"Idempotency-Key": "shared"}
    demo_id = await _send_with(s2s, headers)
    tight = S2S(server, app="tight")
    try:
        tight_id = await _send_with(tight, headers)
        assert tight_id != demo_id
        assert await message_count(tight) == 1
        assert (await tight.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [tight_id]}))[
            "actual"
        ] == 1
    finally:
        await tight.close()
    assert await message_count(s2s) == 1


async def _send_with(s2s: S2S, headers: dict[str, str]) -> str:
    status, body = await s2s.call(
        "messaging",
        "SYS_SEND_MESSAGE",
        {"toProfileIds": ["p1"], "contentJson": {"text": "x"}, "fromJson": SYSTEM_FROM},
        headers,
    )
    assert status == 200, body
    return str(body["data"]["msgId"])


async def test_idempotency_key_replays_a_first_error_response(s2s):
    """Pins: the first response is the answer for the key, even when it was a 4xx refusal."""
    headers = {"Idempotency-Key": "k-error"}
    status, first = await s2s.call(
        "messaging", "SYS_SEND_MESSAGE", {"toProfileIds": ["p1"], "fromJson": SYSTEM_FROM}, headers
    )
    assert status == 400
    assert_error(first, 400, 40358)
    status, again = await s2s.call(
        "messaging", "SYS_SEND_MESSAGE", {"toProfileIds": ["p1"], "fromJson": SYSTEM_FROM}, headers
    )
    assert status == 400
    assert again == first
    assert await message_count(s2s) == 0


async def test_refused_credentials_do_not_consume_an_idempotency_key(s2s):
    """Pins: a 403 for bad credentials is not remembered, so a correct retry still sends."""
    headers = {"Idempotency-Key": "k-auth"}
    status, body = await s2s.raw({**SERVER, "serverSecret": "wrong", **send_op(["p1"])}, headers)
    assert status == 403
    assert_error(body, 403, 40304)
    assert await message_count(s2s) == 0
    status, body = await s2s.raw({**SERVER, **send_op(["p1"])}, headers)
    assert status == 200 and body["status"] == 200
    assert await message_count(s2s) == 1


async def test_idempotency_key_expires(tmp_path):
    """Pins: after idempotency_seconds the key is forgotten and a retry is a new send."""
    async with running(settings_for(tmp_path, idempotency_seconds=0.5)) as node:
        s2s = S2S(node)
        try:
            headers = {"Idempotency-Key": "short-lived"}
            first = await _send_with(s2s, headers)
            assert await _send_with(s2s, headers) == first
            await asyncio.sleep(0.8)
            assert await _send_with(s2s, headers) != first
            assert await message_count(s2s) == 2
        finally:
            await s2s.close()


@pytest.mark.parametrize("key", ["", "k" * 256], ids=["empty", "too-long"])
async def test_bad_idempotency_key_is_refused(s2s, key):
    """Pins: an Idempotency-Key outside 1..255 characters is 400/40001 and nothing is sent."""
    status, body = await s2s.raw({**SERVER, **send_op(["p1"])}, {"Idempotency-Key": key})
    assert status == 400
    assert_error(body, 400, 40001)
    assert await message_count(s2s) == 0


async def test_longest_idempotency_key_is_accepted(s2s):
    """Pins: a 255-character key is within the limit and deduplicates like any other."""
    headers = {"Idempotency-Key": "k" * 255}
    first = await _send_with(s2s, headers)
    assert await _send_with(s2s, headers) == first
    assert await message_count(s2s) == 1


async def test_idempotency_key_on_a_session_packet(s2s):
    """Pins: the header also dedupes session packets; the same key on another packet (here a
    new packetId) is another request: 409, nothing run."""
    session = await open_session(s2s)
    headers = {"Idempotency-Key": "pkt"}
    _, first = await packet(s2s, session, 1, [send_op(["p1"])], headers)
    status, again = await packet(s2s, session, 1, [send_op(["p1"])], headers)
    assert status == 200
    assert again == first
    status, other = await packet(s2s, session, 2, [send_op(["p1"])], headers)
    assert status == 409
    assert_error(other, 409, 40001)
    assert await message_count(s2s) == 1


# --- malformed requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b"", b'{"appId":', b"\xff\xfe{}", b"[]", b'"text"', b"5", b"null"],
    ids=["text", "empty", "truncated", "bad-utf8", "array", "string", "number", "null"],
)
async def test_body_that_is_not_a_json_object_is_400_40001(s2s, body):
    """Pins: a body that is not one JSON object is 400/40001."""
    status, answer = await s2s.raw(body)
    assert status == 400
    assert_error(answer, 400, 40001)


async def test_oversized_body_is_413_40600(s2s):
    """Pins: a body over the 2 MiB limit (declared length) is 413/40600 and nothing is sent."""
    data = {"toProfileIds": ["p1"], "contentJson": {"t": "x" * (2 * 1024 * 1024)}}
    status, body = await s2s.raw({**SERVER, **op("messaging", "SYS_SEND_MESSAGE", data)})
    assert status == 413
    assert_error(body, 413, 40600)
    assert await message_count(s2s) == 0


async def test_oversized_chunked_body_is_413_40600(server, s2s):
    """Pins: the limit also holds for a chunked body with no Content-Length."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"appId":"demo","serverName":"backend","serverSecret":"server-secret",'
        yield b'"service":"heartbeat","operation":"HEARTBEAT","data":{"pad":"'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}}'

    async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as http:
        r = await http.post("/s2sdispatcher", content=chunks())
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert_error(r.json(), 413, 40600)


async def test_the_body_limit_is_the_setting(tmp_path):
    """RTT_MAX_BODY_BYTES is the limit: at 64 KiB a 100 KB body is 413/40600 and a 60 KB one
    is read."""
    async with running(settings_for(tmp_path, max_body_bytes=64 * 1024)) as node:
        s2s = S2S(node)
        try:
            big = {**SERVER, **op("heartbeat", "HEARTBEAT", {"pad": "x" * 100_000})}
            status, body = await s2s.raw(big)
            assert status == 413
            assert_error(body, 413, 40600)
            small = {**SERVER, **op("heartbeat", "HEARTBEAT", {"pad": "x" * 60_000})}
            assert await s2s.raw(small) == (200, {"status": 200, "data": None})
        finally:
            await s2s.close()


async def test_body_just_under_the_limit_is_read(s2s):
    """Pins: the 413 limit is not hit by a large but allowed body (1.5 MiB of padding)."""
    body = {**SERVER, **op("heartbeat", "HEARTBEAT", {"pad": "x" * (1536 * 1024)})}
    status, answer = await s2s.raw(body)
    assert status == 200
    assert answer == {"status": 200, "data": None}


@pytest.mark.parametrize(
    ("service", "operation"),
    [
        ("nope", "SYS_SEND_MESSAGE"),
        ("messaging", "NOPE"),
        ("messaging", "sys_send_message"),
        (None, "SYS_SEND_MESSAGE"),
        ("messaging", None),
        (5, 6),
        ("authenticationV2", "AUTHENTICATE"),
    ],
    ids=["service", "operation", "lowercase", "no-service", "no-operation", "ints", "auth-op"],
)
async def test_unknown_service_or_operation_is_400_40001(s2s, service, operation):
    """Pins: an unregistered service/operation pair is 400/40001."""
    status, body = await s2s.call(service, operation, {})
    assert status == 400
    assert_error(body, 400, 40001)


@pytest.mark.parametrize(
    ("service", "operation", "data"),
    [
        ("messaging", "GET_MESSAGE_COUNTS", {}),
        ("messaging", "GET_MESSAGE_BOXES", {}),
        ("messaging", "SEND_MESSAGE", {"toProfileIds": ["p1"], "contentJson": {"a": 1}}),
        ("messaging", "SEND_MESSAGE_SIMPLE", {"toProfileIds": ["p1"], "text": "hi"}),
        ("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": ["x"]}),
        ("messaging", "DELETE_MESSAGES", {"msgbox": "inbox", "msgIds": ["x"]}),
        ("messaging", "MARK_MESSAGES_READ", {"msgbox": "inbox", "msgIds": ["x"]}),
        ("event", "GET_EVENTS", {}),
        ("event", "DELETE_INCOMING", {"evId": "x"}),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_client_only_operation_is_refused_from_s2s(s2s, service, operation, data):
    """Pins: a client operation called by a server is refused (403/40304) and performs nothing."""
    status, body = await s2s.call(service, operation, data)
    assert status == 403
    assert_error(body, 403, 40304)
    assert await message_count(s2s) == 0
