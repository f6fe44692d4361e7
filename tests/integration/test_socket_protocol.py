"""The client socket protocol (API.md §4): CONNECT, refusals, heartbeats, requests, limits, seq."""

from __future__ import annotations

import asyncio
import time
import warnings
from pathlib import Path
from typing import Any

import jwt
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.support.clients import S2S, SECRETS, TIMEOUT, open_socket, socket, token
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for

ERROR_KEYS = {"status", "reason_code", "status_message", "severity"}


def connect_frame(app: str = "demo", profile: str = "p1", **data: Any) -> str:
    body = {"appId": app, "profileId": profile, "auth": {}, **data}
    return orjson.dumps({"service": "rtt", "operation": "CONNECT", "data": body}).decode()


async def until_closed(ws: websockets.ClientConnection, timeout: float = TIMEOUT) -> list[Any]:
    """Every frame the server sends until it closes the socket (bounded)."""
    frames: list[Any] = []
    async with asyncio.timeout(timeout):
        try:
            while True:
                frames.append(orjson.loads(await ws.recv()))
        except ConnectionClosed:
            pass
    return frames


async def refused(
    server: RunningServer, first: str | bytes, *, query_token: str | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Open a raw socket, send one frame, and collect what comes back until the close."""
    url = server.ws_url + (f"?token={query_token}" if query_token is not None else "")
    ws = await asyncio.wait_for(websockets.connect(url), TIMEOUT)
    try:
        await ws.send(first)
        frames = await until_closed(ws)
    finally:
        await ws.close()
    return frames, ws.close_code


def assert_disconnect(frames: list[dict[str, Any]], reason_code: int) -> None:
    assert len(frames) == 1, frames
    [frame] = frames
    assert frame["service"] == "rtt" and frame["operation"] == "DISCONNECT", frame
    assert isinstance(frame["data"]["reason"], str) and frame["data"]["reason"]
    assert frame["data"]["reasonCode"] == reason_code, frame


def assert_error(reply: dict[str, Any], status: int, reason: int, request_id: Any) -> None:
    assert reply.keys() >= ERROR_KEYS, reply
    assert reply["status"] == status and reply["reason_code"] == reason, reply
    assert reply["severity"] == "ERROR" and isinstance(reply["status_message"], str), reply
    assert reply["requestId"] == request_id, reply
    assert "data" not in reply, reply


# --- CONNECT ---------------------------------------------------------------------------------


async def test_connect_with_token_in_query(server):
    """Fails if a token in the ?token= query is not accepted or the CONNECT reply lacks fields."""
    async with socket(server, "p1") as client:
        assert isinstance(client.connect["cxId"], str) and client.connect["cxId"]
        assert client.connect["heartbeatSeconds"] == int(server.settings.heartbeat_seconds)
        assert type(client.connect["heartbeatSeconds"]) is int
        assert client.connect["seq"] == 0
        reply = await client.ok("messaging", "GET_MESSAGE_BOXES", {})
        assert reply == {"items": ["inbox", "sent"]}


async def test_connect_with_token_in_auth_data(server):
    """Fails if CONNECT data.auth.token is ignored when the query has no token."""
    async with socket(server, "p1", in_query=False) as client:
        assert client.connect["cxId"]
        assert (await client.ok("messaging", "GET_MESSAGE_COUNTS", {}))["inbox"]["total"] == 0


async def test_connect_reply_is_first_frame_and_exact_shape(server):
    """Fails if the CONNECT reply is not the first frame or carries unexpected shape."""
    ws = await asyncio.wait_for(websockets.connect(f"{server.ws_url}?token={token('p1')}"), TIMEOUT)
    try:
        await ws.send(connect_frame())
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    finally:
        await ws.close()
    assert reply["service"] == "rtt" and reply["operation"] == "CONNECT"
    assert {"cxId", "heartbeatSeconds", "seq"} <= reply["data"].keys()
    assert "seq" not in reply  # the reply is outside the stream


async def test_connect_ids_are_unique_per_connection(server):
    """Fails if two connections (even of one profile) share a cxId."""
    async with socket(server, "p1") as a, socket(server, "p1") as b, socket(server, "p2") as c:
        ids = {a.connect["cxId"], b.connect["cxId"], c.connect["cxId"]}
    assert len(ids) == 3


async def test_connect_seq_is_latest_stream_position(server, s2s):
    """Fails if CONNECT's seq is not the profile's latest position, or a plain CONNECT replays."""
    for i in range(3):
        await s2s.send(["p1"], {"i": i})
    await s2s.send(["p2"])
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        assert p1.connect["seq"] == 3
        assert p2.connect["seq"] == 1
        await p1.silent(0.3)  # no since: nothing is replayed
        await s2s.send(["p1"], {"i": 3})
        [frame] = await p1.pushed(1)
        assert frame["seq"] == 4 and frame["data"]["message"]["content"] == {"i": 3}


async def test_query_token_without_auth_object(server):
    """Fails if a CONNECT without an `auth` object is refused when the query carries the token."""
    ws = await asyncio.wait_for(websockets.connect(f"{server.ws_url}?token={token('p1')}"), TIMEOUT)
    try:
        frame = {"service": "rtt", "operation": "CONNECT", "data": {"appId": "demo"}}
        await ws.send(orjson.dumps(frame).decode())
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    finally:
        await ws.close()
    assert reply["operation"] == "CONNECT", reply


# --- refused CONNECTs ------------------------------------------------------------------------


def _expired() -> str:
    return token("p1", ttl=-60)


def _wrong_secret() -> str:
    return jwt.encode(
        {"sub": "p1", "app": "demo", "exp": int(time.time()) + 600},
        SECRETS["tight"],
        algorithm="HS256",
    )


def _unknown_app() -> str:
    return jwt.encode(
        {"sub": "p1", "app": "nope", "exp": int(time.time()) + 600},
        SECRETS["demo"],
        algorithm="HS256",
    )


def _no_subject() -> str:
    return jwt.encode(
        {"app": "demo", "exp": int(time.time()) + 600}, SECRETS["demo"], algorithm="HS256"
    )


def _no_expiry() -> str:
    return jwt.encode({"sub": "p1", "app": "demo"}, SECRETS["demo"], algorithm="HS256")


def _wrong_algorithm() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns that the key is short for HS512
        return jwt.encode(
            {"sub": "p1", "app": "demo", "exp": int(time.time()) + 600},
            SECRETS["demo"],
            algorithm="HS512",
        )


@pytest.mark.parametrize(
    "make",
    [
        lambda: "garbage",
        _expired,
        _wrong_secret,
        _unknown_app,
        _no_subject,
        _no_expiry,
        _wrong_algorithm,
        lambda: token("p1")[:-4] + "AAAA",
    ],
    ids=[
        "garbage",
        "expired",
        "wrong-secret",
        "unknown-app",
        "no-sub",
        "no-exp",
        "hs512",
        "tampered",
    ],
)
async def test_bad_token_in_query_is_refused(server, make):
    """Fails if a bad/expired/foreign token is accepted or not refused with DISCONNECT + 4001."""
    frames, code = await refused(server, connect_frame(), query_token=make())
    assert_disconnect(frames, 40304)
    assert code == 4001


async def test_bad_token_in_auth_data_is_refused(server):
    """Fails if an expired token in data.auth.token is accepted."""
    frame = connect_frame(auth={"token": _expired()})
    frames, code = await refused(server, frame)
    assert_disconnect(frames, 40304)
    assert code == 4001


async def test_missing_token_is_refused(server):
    """Fails if a CONNECT with no token anywhere is accepted."""
    frames, code = await refused(server, connect_frame())
    assert_disconnect(frames, 40304)
    assert code == 4001


async def test_token_of_another_app_is_refused_for_this_app(server):
    """Fails if a valid token of app `tight` opens a session claiming appId `demo`."""
    frames, code = await refused(
        server, connect_frame(app="demo"), query_token=token("p1", "tight")
    )
    assert_disconnect(frames, 40304)
    assert code == 4001


async def test_profile_mismatching_token_is_refused(server):
    """Fails if CONNECT can name a profileId other than the token's subject."""
    frames, code = await refused(server, connect_frame(profile="p2"), query_token=token("p1"))
    assert_disconnect(frames, 40304)
    assert code == 4001


async def test_impersonation_gets_no_frames_of_the_victim(server, s2s):
    """Fails if a refused impersonation attempt still receives the victim's pushed frames."""
    await s2s.send(["victim"], {"secret": 1})
    frames, code = await refused(
        server, connect_frame(profile="victim", since=0), query_token=token("attacker")
    )
    assert code == 4001
    assert all("seq" not in f for f in frames), frames


async def test_app_with_rtt_disabled_is_refused(server):
    """Fails if an app whose `rtt` feature is off can open a socket."""
    frames, code = await refused(
        server, connect_frame(app="quiet"), query_token=token("p1", "quiet")
    )
    assert_disconnect(frames, 40601)
    assert code == 4001


@pytest.mark.parametrize(
    "first",
    [
        orjson.dumps({"service": "rtt", "operation": "HEARTBEAT", "data": None}).decode(),
        orjson.dumps(
            {"service": "messaging", "operation": "GET_MESSAGE_BOXES", "data": {}, "requestId": 1}
        ).decode(),
        orjson.dumps({"service": "rtt", "operation": "DISCONNECT", "data": None}).decode(),
        "not json at all",
        "[1, 2, 3]",
        b"\x00\x01binary",
    ],
    ids=["heartbeat", "request", "disconnect", "not-json", "array", "binary"],
)
async def test_nothing_is_accepted_before_connect(server, first):
    """Fails if any frame other than rtt/CONNECT is served before CONNECT, or close is not 4000."""
    frames, code = await refused(server, first, query_token=token("p1"))
    assert_disconnect(frames, 40001)
    assert code == 4000


@pytest.mark.parametrize("since", [-1, "3", 1.5, True])
async def test_bad_since_is_refused(server, since):
    """Fails if CONNECT accepts a `since` that is not a non-negative integer."""
    frames, code = await refused(server, connect_frame(since=since), query_token=token("p1"))
    assert_disconnect(frames, 40001)
    assert code == 4000


async def test_refused_socket_is_not_online(server, s2s):
    """Fails if a refused CONNECT leaves the profile counted as online."""
    await refused(server, connect_frame(profile="p2"), query_token=token("p1"))
    online = await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["p1", "p2"]})
    assert online == {"online": {"p1": False, "p2": False}}


# --- heartbeats and closing ------------------------------------------------------------------


async def test_heartbeat_is_answered(server):
    """Fails if rtt/HEARTBEAT gets no rtt/HEARTBEAT answer."""
    async with socket(server, "p1") as client:
        for _ in range(3):
            await client.send({"service": "rtt", "operation": "HEARTBEAT", "data": None})
            frame = await client.recv()
            assert frame == {"service": "rtt", "operation": "HEARTBEAT", "data": None}


async def test_heartbeats_are_not_rate_limited(tmp_path: Path):
    """Fails if heartbeats spend the request budget (tight app allows 3 requests/s)."""
    async with running(settings_for(tmp_path)) as server, socket(server, "p1", app="tight") as c:
        for _ in range(10):
            await c.send({"service": "rtt", "operation": "HEARTBEAT", "data": None})
        for _ in range(10):
            assert (await c.recv())["operation"] == "HEARTBEAT"
        assert await c.ok("messaging", "GET_MESSAGE_BOXES", {})


async def test_silent_connection_is_closed_after_two_heartbeats(tmp_path: Path):
    """Fails if a silent socket is not closed (code 4002) at about 2x heartbeatSeconds."""
    async with running(settings_for(tmp_path, heartbeat_seconds=0.5)) as server:
        client = await open_socket(server, "p1")
        assert client.connect["heartbeatSeconds"] == 1  # an integer, at least 1 (issue 10)
        started = time.monotonic()
        frames = await until_closed(client.ws, timeout=5)
        elapsed = time.monotonic() - started
        assert client.ws.close_code == 4002
        assert 0.8 <= elapsed <= 3.0, elapsed
        assert [f["operation"] for f in frames] == ["DISCONNECT"], frames


async def test_heartbeating_connection_stays_open(tmp_path: Path):
    """Fails if a socket that heartbeats every heartbeatSeconds/2 is closed for silence."""
    async with running(settings_for(tmp_path, heartbeat_seconds=0.5)) as server:
        s2s = S2S(server)
        try:
            async with socket(server, "p1") as client:
                deadline = time.monotonic() + 2.5  # five times the silence limit
                while time.monotonic() < deadline:
                    await client.send({"service": "rtt", "operation": "HEARTBEAT", "data": None})
                    assert (await client.recv(1.0))["operation"] == "HEARTBEAT"
                    await asyncio.sleep(0.25)
                assert client.ws.close_code is None
                await s2s.send(["p1"], {"still": "here"})
                [frame] = await client.pushed(1)
                assert frame["data"]["message"]["content"] == {"still": "here"}
        finally:
            await s2s.close()


async def test_requests_also_keep_connection_alive(tmp_path: Path):
    """Fails if ordinary requests do not count as activity for the silence timer."""
    async with (
        running(settings_for(tmp_path, heartbeat_seconds=0.5)) as server,
        socket(server, "p1") as client,
    ):
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            await client.ok("messaging", "GET_MESSAGE_BOXES", {})
            await asyncio.sleep(0.3)
        assert client.ws.close_code is None


async def test_silence_before_connect_is_closed(tmp_path: Path):
    """Fails if a socket that never sends CONNECT is kept open past 2x heartbeatSeconds."""
    async with running(settings_for(tmp_path, heartbeat_seconds=0.5)) as server:
        ws = await asyncio.wait_for(websockets.connect(server.ws_url), TIMEOUT)
        try:
            frames = await until_closed(ws, timeout=5)
        finally:
            await ws.close()
        assert ws.close_code == 4000
        assert_disconnect(frames, 40001)


async def test_client_disconnect_closes_normally(server, s2s):
    """Fails if rtt/DISCONNECT from the client does not close with 1000 and go offline."""
    client = await open_socket(server, "p1")
    await client.send({"service": "rtt", "operation": "DISCONNECT", "data": None})
    frames = await until_closed(client.ws)
    assert frames == []
    assert client.ws.close_code == 1000
    async with asyncio.timeout(TIMEOUT):
        while (await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["p1"]}))["online"]["p1"]:
            await asyncio.sleep(0.02)


# --- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize("request_id", [1, 987654, "abc-123", None])
async def test_request_echoes_request_id(server, request_id):
    """Fails if a reply does not carry the request's requestId, status 200 and its data."""
    async with socket(server, "p1") as client:
        await client.send(
            {
                "service": "messaging",
                "operation": "GET_MESSAGE_BOXES",
                "data": {},
                "requestId": request_id,
            }
        )
        reply = await client.recv()
    assert reply == {
        "service": "messaging",
        "operation": "GET_MESSAGE_BOXES",
        "requestId": request_id,
        "status": 200,
        "data": {"items": ["inbox", "sent"]},
    }


async def test_replies_come_in_request_order(server):
    """Fails if pipelined requests are answered out of order or one is lost."""
    async with socket(server, "p1") as client:
        for i in range(15):
            await client.send(
                {
                    "service": "messaging",
                    "operation": "GET_MESSAGE_COUNTS" if i % 2 else "GET_MESSAGE_BOXES",
                    "data": {},
                    "requestId": i,
                }
            )
        replies = [await client.recv() for _ in range(15)]
    assert [r["requestId"] for r in replies] == list(range(15))
    assert all(r["status"] == 200 for r in replies)


@pytest.mark.parametrize(
    ("service", "operation", "data", "reason"),
    [
        ("messaging", "NO_SUCH_OPERATION", {}, 40001),
        ("nosuchservice", "GET_MESSAGE_BOXES", {}, 40001),
        (None, None, {}, 40001),
        ("messaging", "GET_MESSAGES", {"msgbox": "inbox"}, 40358),
        ("messaging", "GET_MESSAGES", {"msgbox": "trash", "msgIds": ["x"]}, 40001),
        ("messaging", "GET_MESSAGE_BOXES", [1, 2], 40001),
    ],
    ids=["unknown-op", "unknown-service", "no-service", "missing-param", "bad-box", "data-list"],
)
async def test_error_reply_carries_request_id_and_shape(server, service, operation, data, reason):
    """Fails if an error reply lacks the brainCloud error shape or the request's requestId."""
    async with socket(server, "p1") as client:
        await client.send(
            {"service": service, "operation": operation, "data": data, "requestId": "r-42"}
        )
        reply = await client.recv()
        assert_error(reply, 400, reason, "r-42")
        assert reply["service"] == service and reply["operation"] == operation
        # the socket is still usable after an error
        assert await client.ok("messaging", "GET_MESSAGE_BOXES", {})


@pytest.mark.parametrize(
    "raw",
    ["{not json", "[]", "42", '"a string"', b'{"service":"messaging"}'],
    ids=["broken", "array", "number", "string", "binary"],
)
async def test_malformed_frame_is_40001(server, raw):
    """Fails if a non-JSON / non-object / binary frame is not answered 40001 or kills the socket."""
    async with socket(server, "p1") as client:
        await client.ws.send(raw)
        reply = await client.recv()
        assert_error(reply, 400, 40001, None)
        assert await client.ok("messaging", "GET_MESSAGE_BOXES", {})


async def test_frame_over_app_limit_is_40600(server):
    """Fails if a frame over the app's max_frame_bytes (1024 on `tight`) is served."""
    async with socket(server, "p1", app="tight") as client:
        big = {
            "service": "messaging",
            "operation": "SEND_MESSAGE",
            "data": {"toProfileIds": ["p2"], "contentJson": {"pad": "x" * 1100}},
            "requestId": 7,
        }
        await client.send(big)
        reply = await client.recv()
        assert reply["status"] == 400 and reply["reason_code"] == 40600, reply
        assert reply["severity"] == "ERROR"
        counts = await client.ok("messaging", "GET_MESSAGE_COUNTS", {})
        assert counts["sent"]["total"] == 0  # nothing was sent


async def test_frame_over_limit_counted_in_bytes(server):
    """Fails if max_frame_bytes is measured in characters instead of UTF-8 bytes."""
    async with socket(server, "p1", app="tight") as client:
        frame = orjson.dumps(
            {"service": "messaging", "operation": "GET_MESSAGE_BOXES", "data": {"pad": "é" * 500}}
        ).decode()
        assert len(frame) < 1024 < len(frame.encode())
        await client.send(frame)
        reply = await client.recv()
        assert reply["reason_code"] == 40600, reply


async def test_frame_under_limit_is_served(server):
    """Fails if a frame just under max_frame_bytes is refused."""
    async with socket(server, "p1", app="tight") as client:
        pad = "x" * 900
        frame = orjson.dumps(
            {
                "service": "messaging",
                "operation": "GET_MESSAGE_BOXES",
                "data": {"pad": pad},
                "requestId": 1,
            }
        ).decode()
        assert len(frame.encode()) <= 1024
        await client.send(frame)
        reply = await client.recv()
        assert reply["status"] == 200, reply


async def test_default_frame_limit_is_256k(server):
    """Fails if the default app serves a frame over 262144 bytes."""
    async with socket(server, "p1") as client:
        frame = orjson.dumps(
            {
                "service": "messaging",
                "operation": "GET_MESSAGE_BOXES",
                "data": {"pad": "x" * 270_000},
                "requestId": 1,
            }
        ).decode()
        await client.send(frame)
        reply = await client.recv()
        assert reply["reason_code"] == 40600, reply
        assert await client.ok("messaging", "GET_MESSAGE_BOXES", {})


async def test_rate_limit_answers_429_40650(server):
    """Fails if requests over client_requests_per_second are served, or 429s lack the requestId."""
    async with socket(server, "p1", app="tight") as client:
        for i in range(12):
            await client.send(
                {
                    "service": "messaging",
                    "operation": "GET_MESSAGE_BOXES",
                    "data": {},
                    "requestId": i,
                }
            )
        replies = [await client.recv() for _ in range(12)]
        assert [r["requestId"] for r in replies] == list(range(12))
        ok = [r for r in replies if r["status"] == 200]
        limited = [r for r in replies if r["status"] != 200]
        assert 3 <= len(ok) <= 4, replies
        assert ok == replies[: len(ok)]  # the burst is served first
        for reply in limited:
            assert_error(reply, 429, 40650, reply["requestId"])
        await asyncio.sleep(1.1)  # the bucket refills
        assert await client.ok("messaging", "GET_MESSAGE_BOXES", {})


async def test_rate_limit_is_per_connection(server):
    """Fails if one connection's burst spends another connection's budget."""
    async with socket(server, "p1", app="tight") as a, socket(server, "p1", app="tight") as b:
        for i in range(6):
            await a.send({"service": "messaging", "operation": "GET_MESSAGE_BOXES", "requestId": i})
        statuses = [(await a.recv())["status"] for _ in range(6)]
        assert 429 in statuses
        assert await b.ok("messaging", "GET_MESSAGE_BOXES", {})


# --- pushed frames ---------------------------------------------------------------------------


async def test_pushed_frames_have_gap_free_seq(server, s2s):
    """Fails if pushed frames of mixed kinds do not carry seq 1,2,3... in order."""
    async with socket(server, "p1") as client:
        sent = []
        for i in range(5):
            sent.append(await s2s.send(["p1", "p2"], {"i": i}))
            await s2s.ok(
                "event",
                "SYS_SEND_EVENT_TO_PROFILES",
                {"toIds": ["p1"], "eventType": "ping", "eventData": {"i": i}},
            )
        frames = await client.pushed(10)
        assert [f["seq"] for f in frames] == list(range(1, 11))
        assert [(f["service"], f["operation"]) for f in frames] == [
            ("messaging", "INCOMING"),
            ("event", "GET_EVENTS"),
        ] * 5
        assert [f["data"]["msgId"] for f in frames[::2]] == sent
        assert [f["data"]["eventData"] for f in frames[1::2]] == [{"i": i} for i in range(5)]
        await client.silent(0.2)


async def test_seq_is_per_profile(server, s2s):
    """Fails if one profile's sends advance another profile's seq."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        await s2s.send(["p2"])
        await s2s.send(["p2"])
        await s2s.send(["p1", "p2"])
        [f1] = await p1.pushed(1)
        f2 = await p2.pushed(3)
        assert f1["seq"] == 1
        assert [f["seq"] for f in f2] == [1, 2, 3]
        assert f1["data"]["msgId"] == f2[2]["data"]["msgId"]


async def test_rtt_only_event_has_no_seq(server, s2s):
    """Fails if an RTT-only event takes a stream position (it is never stored)."""
    async with socket(server, "p1") as client:
        await s2s.ok(
            "event", "SYS_SEND_RTT_ONLY", {"toId": "p1", "eventType": "typing", "eventData": {}}
        )
        frame = await client.recv()
        assert frame["service"] == "event" and frame["operation"] == "GET_EVENTS"
        assert "seq" not in frame and frame["data"]["eventType"] == "typing"
        await s2s.send(["p1"])
        [pushed] = await client.pushed(1)
        assert pushed["seq"] == 1


async def test_one_profile_two_sockets_both_get_every_frame(server, s2s):
    """Fails if a profile's second device misses frames or sees different seqs."""
    async with socket(server, "p1") as a, socket(server, "p1", in_query=False) as b:
        ids = [await s2s.send(["p1"], {"i": i}) for i in range(4)]
        await s2s.ok("event", "SYS_SEND_EVENT_TO_PROFILES", {"toIds": ["p1"], "eventType": "e"})
        fa, fb = await a.pushed(5), await b.pushed(5)
        assert fa == fb
        assert [f["seq"] for f in fa] == [1, 2, 3, 4, 5]
        assert [f["data"]["msgId"] for f in fa[:4]] == ids
        # closing one device leaves the other live
        await b.close()
        await s2s.send(["p1"], {"after": True})
        [late] = await a.pushed(1)
        assert late["seq"] == 6


async def test_requests_interleave_with_pushes(server, s2s):
    """Fails if a request reply is lost or corrupted while frames are pushed on the same socket."""
    async with socket(server, "p1") as client:
        pusher = asyncio.create_task(_send_many(s2s, "p1", 30))
        pushed: list[dict[str, Any]] = []
        for request_id in range(10):
            await client.send(
                {"service": "messaging", "operation": "GET_MESSAGE_BOXES", "requestId": request_id}
            )
            while True:
                frame = await client.recv()
                if "seq" in frame:
                    pushed.append(frame)
                    continue
                assert frame["requestId"] == request_id and frame["status"] == 200, frame
                assert frame["data"] == {"items": ["inbox", "sent"]}
                break
        await asyncio.wait_for(pusher, TIMEOUT * 2)
        pushed += await client.pushed(30 - len(pushed))
        assert [f["seq"] for f in pushed] == list(range(1, 31))


async def _send_many(s2s: S2S, profile: str, n: int) -> None:
    for i in range(n):
        await s2s.send([profile], {"i": i})


async def test_plain_connect_during_sends_has_no_gap(server, s2s):
    """Fails if, after CONNECT (no since) under concurrent sends, the first frame is not seq+1."""
    pusher = asyncio.create_task(_send_many(s2s, "p1", 150))
    try:
        checked = 0
        while not pusher.done() and checked < 15:
            client = await open_socket(server, "p1")
            try:
                start = client.connect["seq"]
                frames = await client.pushed(1) if start < 150 else []
                if frames:
                    assert frames[0]["seq"] == start + 1, (start, frames[0]["seq"])
                    checked += 1
            finally:
                # cut the connection: a close handshake could queue behind unread frames
                client.ws.transport.abort()
                await asyncio.wait_for(client.ws.wait_closed(), TIMEOUT)
        assert checked > 0
    finally:
        await asyncio.wait_for(pusher, TIMEOUT * 4)
