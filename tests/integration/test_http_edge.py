"""The HTTP edge (issue 8): deadlines for a request's head and body, the connection ceiling,
quiet logs for clients that leave mid-body, bounded S2S error answers, deep JSON.

Every test drives a real node over loopback sockets, most with raw bytes no HTTP client would
send. The slowloris flood runs against a real `rtt serve` process so its fds and RSS are the
node's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from loadtest.fanout import rss_bytes
from loadtest.node import NodeProcess
from tests.support import server as support
from tests.support.clients import S2S, SERVER, open_socket, token
from tests.support.raw_http import RawConnection, open_fds, parse
from tests.support.server import APPS_TOML, RunningServer, running
from tests.support.server import test_settings as settings_for
from tests.support.waits import eventually

HEAD = 0.5  # seconds: the test nodes' head and body deadlines
BODY = 0.5
SLACK = 1.5  # scheduling headroom on a shared 2-core machine
AUTH = {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": dict(SERVER)}

PARTIAL_HEADS = {
    "half a request line": b"POST /s2sdisp",
    "a request line": b"POST /s2sdispatcher HTTP/1.1\r\n",
    "headers without the blank line": b"POST /s2sdispatcher HTTP/1.1\r\nHost: t\r\nX-A: b\r\n",
}
PARTIAL_BODY = b"POST /s2sdispatcher HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b'{"a":'


def edge_settings(tmp: Path, **overrides: Any):
    values: dict[str, Any] = {
        "http_header_timeout_seconds": HEAD,
        "http_body_timeout_seconds": BODY,
        "http_keepalive_seconds": 2.0,
        "max_connections": 64,
    }
    return settings_for(tmp, **(values | overrides))


def assert_refusal(raw: bytes, status: int, reason: int) -> dict[str, Any]:
    """One whole answer in the brainCloud shape that ends the connection."""
    answer = parse(raw)
    assert answer is not None, raw
    assert answer.status == status, raw
    assert answer.headers["content-type"] == "application/json", raw
    assert answer.headers["connection"] == "close", raw
    body = answer.json()
    assert body["status"] == status and body["reason_code"] == reason, body
    assert body["severity"] == "ERROR" and body["status_message"], body
    return dict(body)


async def healthz(url: str, timeout: float = 2.0) -> int:
    async with httpx.AsyncClient(timeout=timeout) as http:
        return (await http.get(url + "/healthz")).status_code


# --- deadlines -----------------------------------------------------------------------------


async def test_partial_heads_are_answered_408_and_closed_at_the_head_deadline(tmp_path):
    """Pins: a request head that never completed was held forever (slowloris). Each is now
    answered 408/40001 and closed RTT_HTTP_HEADER_TIMEOUT_SECONDS after accept, and /healthz
    keeps answering while they are held."""
    async with running(edge_settings(tmp_path)) as server:
        started = time.monotonic()
        held = [
            await RawConnection.open(server.settings.port, head)
            for head in PARTIAL_HEADS.values()
            for _ in range(10)
        ]
        assert await healthz(server.url) == 200
        answers = await asyncio.gather(*(c.until_closed(HEAD + SLACK) for c in held))
        elapsed = time.monotonic() - started
        for raw in answers:
            assert "head not complete" in assert_refusal(raw, 408, 40001)["status_message"]
        assert elapsed >= HEAD * 0.9
        await eventually(lambda: _value(server.connections), lambda n: n == 0, what="all closed")
        for connection in held:
            connection.close()


async def test_a_head_trickled_a_byte_at_a_time_is_cut_at_the_deadline(tmp_path):
    """Pins: headers arriving a byte at a time kept their connection open as long as bytes
    came. The head deadline counts from accept; bytes arriving do not extend it."""
    async with running(edge_settings(tmp_path)) as server:
        connection = await RawConnection.open(server.settings.port)
        started = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 10_000

        async def trickle() -> None:
            for byte in head:
                await connection.send(bytes([byte]))
                await asyncio.sleep(0.02)

        task = asyncio.create_task(trickle())
        try:
            raw = await connection.until_closed(HEAD + SLACK)
        finally:
            task.cancel()
            connection.close()
        assert_refusal(raw, 408, 40001)
        assert HEAD * 0.9 <= time.monotonic() - started < HEAD + SLACK


async def test_a_head_over_its_size_limit_is_431_and_closed(tmp_path):
    """Pins: httptools keeps every header line until the head ends, and nothing bounded it: one
    peer streaming header lines at loopback speed grew the node by 1.4 GB in 3 s. A head still
    incomplete past RTT_HTTP_MAX_HEAD_BYTES is answered 431/40600 and closed at once."""
    settings = edge_settings(tmp_path, http_max_head_bytes=8192)
    async with running(settings) as server:
        started = time.monotonic()
        line = b"X-Junk: " + b"a" * 1000 + b"\r\n"
        connection = await RawConnection.open(
            server.settings.port, b"POST /s2sdispatcher HTTP/1.1\r\nHost: t\r\n" + line * 9
        )
        try:
            raw = await connection.until_closed(HEAD / 2)  # long before the head deadline
        finally:
            connection.close()
        assert "request head over 8192 bytes" in assert_refusal(raw, 431, 40600)["status_message"]
        assert time.monotonic() - started < HEAD / 2
        assert await healthz(server.url) == 200


async def test_a_head_just_under_its_size_limit_is_served(tmp_path):
    """The limit is on the head alone: a head under it is served, and a body of any allowed
    size after it does not count towards it."""
    settings = edge_settings(tmp_path, http_max_head_bytes=8192)
    async with running(settings) as server, httpx.AsyncClient(timeout=5.0) as http:
        padding = {"x-padding": "a" * 7000}
        assert (await http.get(server.url + "/healthz", headers=padding)).status_code == 200
        big = {**SERVER, "service": "heartbeat", "operation": "HEARTBEAT", "pad": "b" * 500_000}
        response = await http.post(server.url + "/s2sdispatcher", content=orjson.dumps(big))
        assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/s2sdispatcher", "/nowhere"], ids=["read", "not-read"])
async def test_a_body_that_never_completes_is_closed_at_the_body_deadline(tmp_path, path):
    """Pins: a request whose body never completed held its connection (and, on
    /s2sdispatcher, a handler waiting for it) forever. It is now answered 408/40001 and closed
    RTT_HTTP_BODY_TIMEOUT_SECONDS after its head; a body the app never reads (a 404 answered
    at once) is bound by the same deadline."""
    async with running(edge_settings(tmp_path)) as server:
        request = PARTIAL_BODY.replace(b"/s2sdispatcher", path.encode())
        connection = await RawConnection.open(server.settings.port, request)
        started = time.monotonic()
        raw = await connection.until_closed(BODY + SLACK)
        connection.close()
        assert BODY * 0.9 <= time.monotonic() - started < BODY + SLACK
        if path == "/s2sdispatcher":
            assert "body not complete" in assert_refusal(raw, 408, 40001)["status_message"]
        else:  # answered before the body was read: nothing more is written, the socket closes
            answer = parse(raw)
            assert answer is not None and answer.status == 404, raw
            assert raw.endswith(answer.body)
        s2s = S2S(server)
        try:
            await s2s.send(["p1"])  # the node serves on
        finally:
            await s2s.close()


async def test_each_keep_alive_request_has_its_own_head_deadline(tmp_path):
    """Pins: the head deadline applies again to every request of a keep-alive connection, from
    its first byte, while an idle keep-alive connection is bound by RTT_HTTP_KEEPALIVE_SECONDS
    (it was uvicorn's fixed 5 s), not by the head deadline."""
    keepalive = 2.0
    async with running(edge_settings(tmp_path, http_keepalive_seconds=keepalive)) as server:
        port = server.settings.port
        request = b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"
        connection = await RawConnection.open(port, request)
        assert (await connection.response()).status == 200
        await asyncio.sleep(HEAD * 1.5)  # idle longer than a head may take: still open
        await connection.send(request)
        assert (await connection.response()).status == 200
        await connection.send(b"GET /healthz HTTP/1.1\r\nHo")
        started = time.monotonic()
        assert_refusal(await connection.until_closed(HEAD + SLACK), 408, 40001)
        assert HEAD * 0.9 <= time.monotonic() - started < HEAD + SLACK
        connection.close()

        connection = await RawConnection.open(port, request)
        assert (await connection.response()).status == 200
        started = time.monotonic()
        assert await connection.until_closed(keepalive + SLACK) == b""  # idle: closed silently
        assert keepalive * 0.9 <= time.monotonic() - started
        connection.close()


async def test_a_connection_that_sends_nothing_is_closed_silently(tmp_path):
    """Pins: a connection accepted and never written to was held forever; it is closed at the
    head deadline, without an answer (no request was started)."""
    async with running(edge_settings(tmp_path)) as server:
        connection = await RawConnection.open(server.settings.port)
        started = time.monotonic()
        assert await connection.until_closed(HEAD + SLACK) == b""
        assert time.monotonic() - started >= HEAD * 0.9
        connection.close()


# --- the connection ceiling ----------------------------------------------------------------


async def test_connections_over_the_ceiling_get_503_at_once_websockets_included(tmp_path):
    """Pins: nothing bounded the open connections (20 000 sockets took the node to its fd limit
    and /healthz stopped answering). A connection over RTT_MAX_CONNECTIONS, HTTP or WebSocket,
    is answered 503/50301 with Connection: close and Retry-After at once; open WebSockets count
    toward the ceiling and keep being served."""
    ceiling = 8
    settings = edge_settings(tmp_path, max_connections=ceiling, http_header_timeout_seconds=30.0)
    async with running(settings) as server:
        sockets = [await open_socket(server, f"p{i}") for i in range(ceiling // 2)]
        idle = [await RawConnection.open(server.settings.port) for _ in range(ceiling // 2)]
        await eventually(lambda: _value(server.connections), lambda n: n == ceiling)

        started = time.monotonic()
        async with httpx.AsyncClient(timeout=2.0) as http:
            refused = await http.get(server.url + "/healthz")
        assert time.monotonic() - started < 0.5
        assert refused.status_code == 503
        assert refused.headers["connection"] == "close"
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["reason_code"] == 50301
        with pytest.raises(websockets.InvalidStatus) as upgrade:
            await websockets.connect(f"{server.ws_url}?token={token('p9')}", open_timeout=2)
        assert upgrade.value.response.status_code == 503
        connection = await RawConnection.open(server.settings.port, PARTIAL_BODY)
        assert_refusal(await connection.until_closed(0.5), 503, 50301)  # no deadline waited
        connection.close()

        for connection in idle:
            connection.close()
        await eventually(lambda: healthz(server.url), lambda status: status == 200)
        s2s = S2S(server)
        try:
            await s2s.send(["p0"])
            assert (await sockets[0].pushed(1))[0]["data"]["message"]["content"] == {
                "text": "hello"
            }
        finally:
            await s2s.close()
            for client in sockets:
                await client.close()


async def test_slowloris_flood_is_refused_cut_and_leaves_nothing_behind(tmp_path, engine):
    """Pins: 20 000 sockets that each sent one request line took the node to its fd limit and
    /healthz stopped answering. Against a real `rtt serve` (RTT_MAX_CONNECTIONS=100, 1 s
    deadlines), 300 sockets that each send part of a request and hold: 100 are held and cut at
    the deadline (408), the other 200 are answered 503 at once, /healthz from a fresh client
    answers at once while the node is full (503) and 200 after, and the node's fds and RSS come
    back down."""
    ceiling, flood, deadline = 100, 300, 1.0
    env = {
        **_engine_env(engine),
        "RTT_MAX_CONNECTIONS": str(ceiling),
        "RTT_HTTP_HEADER_TIMEOUT_SECONDS": str(deadline),
        "RTT_HTTP_BODY_TIMEOUT_SECONDS": str(deadline),
    }
    node = NodeProcess(APPS_TOML, directory=tmp_path, env=env)
    await asyncio.to_thread(node.start)
    try:
        async with httpx.AsyncClient(base_url=node.url, timeout=2.0) as http:
            for _ in range(20):  # warm up: what the first requests allocate is not a leak
                assert (await http.get("/healthz")).status_code == 200
        await eventually(lambda: _value(open_fds(node.pid)), lambda n: n < 40, what="idle fds")
        fds_before, rss_before = open_fds(node.pid), rss_bytes(node.pid)

        requests = [*PARTIAL_HEADS.values(), PARTIAL_BODY]
        started = time.monotonic()
        held = [
            await RawConnection.open(node.port, requests[i % len(requests)]) for i in range(flood)
        ]
        fds_peak = open_fds(node.pid)
        probe = time.monotonic()
        status = await healthz(node.url, timeout=1.0)  # full: a prompt 503, never a hang
        assert status in (200, 503) and time.monotonic() - probe < 1.0

        async def outcome(connection: RawConnection) -> tuple[int, float]:
            answer = parse(await connection.until_closed(deadline + 2 * SLACK))
            connection.close()  # having read the answer, like any client
            assert answer is not None
            return answer.status, time.monotonic() - started

        outcomes = await asyncio.gather(*(outcome(connection) for connection in held))
        cut = [t for s, t in outcomes if s == 408]
        refused = [t for s, t in outcomes if s == 503]
        assert len(cut) + len(refused) == flood, outcomes
        assert ceiling - 5 <= len(cut) <= ceiling
        assert min(cut) >= deadline * 0.9
        assert await healthz(node.url) == 200

        fds_after, _ = await eventually(
            lambda: _value(open_fds(node.pid)), lambda n: n <= fds_before + 2, what="fds"
        )
        rss_after = rss_bytes(node.pid)
        print(
            f"\n[{engine}] slowloris {flood} sockets, ceiling {ceiling}: "
            f"{len(cut)} cut at {min(cut):.2f}-{max(cut):.2f} s, {len(refused)} refused 503; "
            f"fds {fds_before} -> {fds_peak} -> {fds_after}; "
            f"RSS {rss_before / 2**20:.1f} -> {rss_after / 2**20:.1f} MiB"
        )
        assert fds_peak <= fds_before + ceiling + ceiling // 4 + 2
        assert rss_after < rss_before + 16 * 2**20
    finally:
        await asyncio.to_thread(node.stop)


class _LimitedNode(NodeProcess):
    """A node started with an open-files limit of (soft, hard)."""

    def __init__(self, nofile: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(APPS_TOML, **kwargs)
        self.nofile = nofile

    def command(self) -> list[str]:
        limit = (
            f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, {self.nofile});"
            " os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
        )
        return [sys.executable, "-c", limit, *super().command()[1:]]


def _soft_open_files(pid: int) -> int:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open-files limit")


async def test_rtt_serve_raises_its_open_files_limit_to_fit_the_ceiling(tmp_path, engine):
    """Pins: the ceiling could exceed what the process may open (a soft limit of 1 024 is
    common), so a flood met the fd limit first. `rtt serve` raises its soft limit to fit
    RTT_MAX_CONNECTIONS (and the refusals that may linger) when the hard limit allows."""
    env = {**_engine_env(engine), "RTT_MAX_CONNECTIONS": "1000"}
    node = _LimitedNode((512, 4096), directory=tmp_path, env=env)
    await asyncio.to_thread(node.start)
    try:
        assert _soft_open_files(node.pid) == 1000 + 250 + 256
        assert "RTT_MAX_CONNECTIONS" not in node.log_text()
    finally:
        await asyncio.to_thread(node.stop)


async def test_a_ceiling_beyond_the_open_files_limit_is_lowered_to_fit(tmp_path, engine):
    """Pins: with RTT_MAX_CONNECTIONS above what the process may ever open, a flood ran the
    node out of fds: accept failed and /healthz stopped answering. `rtt serve` lowers the
    ceiling to what fits and says so; connections over it are answered 503 at once."""
    env = {**_engine_env(engine), "RTT_MAX_CONNECTIONS": "10000"}
    node = _LimitedNode((512, 512), directory=tmp_path, env=env)
    await asyncio.to_thread(node.start)
    fits = (512 - 256) * 4 // 5
    try:
        assert f"serving at most {fits} connections" in node.log_text()
        held = [await RawConnection.open(node.port) for _ in range(fits + 20)]

        async def refused(connection: RawConnection) -> bool:
            try:
                assert_refusal(await connection.until_closed(0.5), 503, 50301)
            except TimeoutError:
                return False
            return True

        outcomes = await asyncio.gather(*(refused(connection) for connection in held))
        assert fits - 2 <= outcomes.count(False) <= fits, outcomes.count(False)
        assert await healthz(node.url, timeout=1.0) == 503
        for connection in held:
            connection.close()
        await eventually(lambda: healthz(node.url), lambda status: status == 200)
    finally:
        await asyncio.to_thread(node.stop)


def _engine_env(engine: str) -> dict[str, str]:
    return {
        "RTT_ENGINE": engine,
        "RTT_REDIS_URL": support.ENGINE["redis_url"] or "redis://127.0.0.1:6379/0",
    }


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"BREW /s2sdispatcher HTTP/1.1\r\nHost: t\r\n\r\n", 400),
        (b"POST /s2sdispatcher HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /s2sdispatcher HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 405),
        (b"GET /nowhere HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", 404),
    ],
    ids=["unknown-method", "negative-length", "wrong-method", "unknown-route"],
)
async def test_refusals_before_any_handler_are_json_too(server, request_bytes, status):
    """Pins: a request uvicorn could not parse answered "Invalid HTTP request received." and
    Starlette's 404/405 answered plain text; every refusal is now JSON in the brainCloud
    shape (reason 40001)."""
    connection = await RawConnection.open(server.settings.port, request_bytes)
    try:
        assert_refusal(await connection.until_closed(), status, 40001)
    finally:
        connection.close()


# --- clients that leave mid-body -----------------------------------------------------------


@contextlib.contextmanager
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Records of rtt and of uvicorn, whose loggers do not propagate to the root (attach once
    the server runs: uvicorn's logging set-up drops handlers added before)."""
    caplog.set_level(logging.INFO, logger="rtt")
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(caplog.handler)
    try:
        yield
    finally:
        uvicorn_error.removeHandler(caplog.handler)


async def test_clients_gone_mid_body_log_short_info_lines_not_tracebacks(tmp_path, caplog):
    """Pins: every client that disconnected mid-body logged a 3.3 KB `ClientDisconnect`
    traceback at error level (2 000 of them wrote 6.7 MB). 200 such clients, half closing and
    half resetting, now leave short info lines (at most one a second per kind), nothing at
    warning or above, no traceback, and the node serves on."""
    clients = 200
    settings = edge_settings(tmp_path, http_body_timeout_seconds=30.0)
    async with running(settings) as server:
        with captured(caplog):
            await _leave_mid_body(server, clients)
        s2s = S2S(server)
        try:
            await s2s.send(["p1"])
        finally:
            await s2s.close()
    records = [r for r in caplog.records if r.name.startswith(("rtt", "uvicorn"))]
    loud = [r for r in records if r.levelno >= logging.WARNING or r.exc_info]
    assert not loud, [r.getMessage()[:200] for r in loud]
    lines = [r.getMessage() for r in records if r.name == "rtt.http"]
    assert lines and all("mid-body" in line and len(line) < 160 for line in lines), lines
    assert len(lines) <= 10  # one a second per kind, each with a count of those it stands for


async def _leave_mid_body(server: RunningServer, clients: int) -> None:
    """`clients` clients each send a head and part of the body, then leave: half close, half
    reset."""
    for i in range(clients):
        connection = await RawConnection.open(server.settings.port, PARTIAL_BODY)
        await asyncio.sleep(0.002)  # the handler is waiting for the rest of the body
        if i % 2:
            connection.reset()
        else:
            connection.close()
    await eventually(lambda: _value(server.connections), lambda n: n == 0, what="all gone")
    await asyncio.sleep(0.1)  # the handlers that were waiting for the bodies have ended


# --- bounded S2S errors --------------------------------------------------------------------


@pytest.fixture
async def http(server: RunningServer):
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as client:
        yield client


async def _post(http: httpx.AsyncClient, body: bytes, **headers: str) -> httpx.Response:
    return await http.post("/s2sdispatcher", content=body, headers=headers)


async def _session(s2s: S2S) -> str:
    status, body = await s2s.raw({"packetId": 0, "messages": [AUTH]})
    assert status == 200, body
    return str(body["messageResponses"][0]["data"]["sessionId"])


async def test_an_unauthenticated_oversized_packet_gets_one_small_error(http):
    """Pins: an unauthenticated 1.2 MB body {"packetId":0,"messages":[0,0,…]} got a 58 MB 403
    back: the error was repeated per entry before the 1..50 bound was checked. A packet out of
    bounds is answered with one error."""
    body = b'{"packetId":0,"messages":[' + b",".join([b"0"] * 600_000) + b"]}"
    assert len(body) > 1_200_000
    r = await _post(http, body)
    assert r.status_code == 403
    assert len(r.content) < 1024
    answer = r.json()
    assert answer["packetId"] == 0
    [error] = answer["messageResponses"]
    assert error["status"] == 403 and error["reason_code"] == 40304


async def test_error_answers_never_outgrow_fifty_entries(s2s, http):
    """Pins: the number of entries of an error answer followed the client's list. Bad
    credentials on a packet within bounds answer one error per message (at most 50); a packet
    with a live session and too many messages answers one 400/40001."""
    bad_auth = {**AUTH, "data": {**SERVER, "serverSecret": "wrong"}}
    status, answer = await s2s.raw({"packetId": 0, "messages": [bad_auth] * 50})
    assert status == 403 and len(answer["messageResponses"]) == 50
    session = await _session(s2s)
    for messages in (51, 100_000):
        status, answer = await s2s.raw(
            {"packetId": 1, "sessionId": session, "messages": [{}] * messages}
        )
        assert status == 400, answer
        [error] = answer["messageResponses"]
        assert error["reason_code"] == 40001


@pytest.mark.parametrize(
    "packet_id",
    ["x" * 500_000, 2**64 - 1, {"a": [1] * 1000}],
    ids=["long-string", "beyond-int64", "object"],
)
async def test_a_packet_id_that_is_not_one_is_refused_and_not_echoed(s2s, packet_id):
    """Pins: the packetId was echoed whatever it was (a 500 KB string came back whole) and one
    beyond 64 bits reached the store. It must be an integer from 0 to 2**63-1; otherwise
    400/40001 with packetId null, and a small answer."""
    session = await _session(s2s)
    status, answer = await s2s.raw({"packetId": packet_id, "sessionId": session, "messages": [{}]})
    assert status == 400, answer
    assert answer["packetId"] is None
    assert len(orjson.dumps(answer)) < 1024
    assert answer["messageResponses"][0]["reason_code"] == 40001


# --- deep JSON -----------------------------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"[]" + b"}" * (depth - 1)


def _stateless_send(content: bytes) -> bytes:
    server = orjson.dumps(SERVER)[1:-1]
    return (
        b"{" + server + b',"service":"messaging","operation":"SYS_SEND_MESSAGE","data":'
        b'{"toProfileIds":["p1"],"fromJson":{"id":null,"name":"Admin"},"contentJson":'
        + content
        + b"}}"
    )


async def _messages(s2s: S2S) -> int:
    context = {"pagination": {"rowsPerPage": 1, "pageNumber": 1}}
    data = await s2s.ok("messaging", "SYS_GET_MESSAGES_PAGE", {"context": context})
    return int(data["results"]["count"])


def _assert_invalid(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == 400 and body["reason_code"] == 40001, body
    assert body["severity"] == "ERROR"


DEPTHS = [255, 300, 1020, 5000]


@pytest.mark.parametrize("depth", DEPTHS)
async def test_deep_content_is_400_40001_and_stores_nothing(s2s, http, depth):
    """Pins: contentJson nested 255-1 020 levels answered a plain-text 500 (orjson's
    recursion limit when the content was encoded). Stateless form: 400/40001 in the brainCloud
    shape, nothing stored, and a later send works."""
    _assert_invalid(await _post(http, _stateless_send(_nested(depth))))
    assert await _messages(s2s) == 0
    await s2s.send(["p1"])
    assert await _messages(s2s) == 1


@pytest.mark.parametrize("depth", DEPTHS)
async def test_deep_event_data_in_a_session_packet_is_400_and_the_session_lives(s2s, http, depth):
    """Pins: eventData nested hundreds of levels in a session packet answered a 500. Now
    400/40001; the packet did not count, so the same packetId then runs."""
    session = await _session(s2s)
    event = (
        b'{"service":"event","operation":"SYS_SEND_EVENT_TO_PROFILES","data":{"toIds":["p1"],'
        b'"eventType":"t","fromProfileId":null,"eventData":' + _nested(depth) + b"}}"
    )
    packet = b'{"packetId":1,"sessionId":"%s","messages":[%s]}' % (session.encode(), event)
    _assert_invalid(await _post(http, packet))
    status, answer = await s2s.raw(
        {
            "packetId": 1,
            "sessionId": session,
            "messages": [{"service": "heartbeat", "operation": "HEARTBEAT"}],
        }
    )
    assert status == 200 and answer["messageResponses"][0]["status"] == 200, answer


async def test_deep_content_retried_with_an_idempotency_key_is_400_each_time(s2s, http):
    """Pins: an Idempotency-Key retry of a deep body answered 500 again (and a 500 is never
    cached, so every retry hit it). Each try answers 400/40001, nothing is stored or cached,
    and the key then serves a good send once."""
    deep = _stateless_send(_nested(300))
    for _ in range(2):
        _assert_invalid(await _post(http, deep, **{"idempotency-key": "k1"}))
    assert await _messages(s2s) == 0
    good = _stateless_send(b'{"text":"once"}')
    first = await _post(http, good, **{"idempotency-key": "k1"})
    again = await _post(http, good, **{"idempotency-key": "k1"})
    assert first.status_code == again.status_code == 200, first.text
    assert first.json() == again.json()
    assert await _messages(s2s) == 1


async def test_content_as_deep_as_the_limit_allows_is_stored_and_read_back(s2s, http):
    """Pins: the depth limit (RTT_MAX_JSON_DEPTH, 64) leaves every accepted body encodable: the
    deepest content a body may carry is stored, and read back equal."""
    depth = 64 - 2  # the body and `data` are two of the levels
    r = await _post(http, _stateless_send(_nested(depth)))
    assert r.status_code == 200, r.text
    [item] = (
        await s2s.ok("messaging", "SYS_GET_MESSAGES", {"msgIds": [r.json()["data"]["msgId"]]})
    )["items"]
    assert item["message"]["content"] == orjson.loads(_nested(depth))
    _assert_invalid(await _post(http, _stateless_send(_nested(depth + 1))))


# --- helpers -------------------------------------------------------------------------------


async def _value(value: Any) -> Any:
    """A value already known, as the awaitable `eventually` polls (re-read on each call)."""
    return value
