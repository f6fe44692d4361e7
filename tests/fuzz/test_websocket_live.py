"""Hostile WebSocket input against a running node (issue 8, item 6): hypothesis byte streams
written after a real opening handshake, before or after a valid CONNECT.

A real `rtt serve` process per engine takes each stream, then the client's end of the TCP
connection (a half-close, so the node answers everything and closes). All the node may send
back: JSON text frames in the documented shapes (replies below 500, refusals, DISCONNECT),
pongs, and a close frame with a documented code or the client's own code echoed; never 1011.
Meanwhile a healthy client beside the fuzz keeps getting pushes and replies, and the node's
RSS stays within a bound.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from loadtest.fanout import rss_bytes
from loadtest.node import NodeProcess
from tests.fuzz.frame_streams import client_close_codes, streams, text_payloads, wire
from tests.support.clients import SERVER, token
from tests.support.nodes import engine_env
from tests.support.raw_ws import (
    CLOSE,
    CONNECT,
    PONG,
    TEXT,
    masked_frame,
    server_frames,
    upgrade_request,
)
from tests.support.server import APPS_TOML

EXAMPLES = 80
ANSWER_SECONDS = 3.0  # the node must answer a stream and close within this
RSS_BOUND = 64 * 2**20  # growth allowed over the whole module, per engine
# 1000 after DISCONNECT; 1002/1007/1009 RFC 6455; 4000 before CONNECT; 4001 refused
DOCUMENTED = {1000, 1002, 1007, 1009, 4000, 4001}
ERROR_KEYS = {"status", "reason_code", "status_message", "severity"}
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OPERATIONS = {
    "messaging": [
        "GET_MESSAGE_BOXES", "GET_MESSAGE_COUNTS", "GET_MESSAGES", "GET_MESSAGES_PAGE",
        "GET_MESSAGES_PAGE_OFFSET", "MARK_MESSAGES_READ", "DELETE_MESSAGES", "SEND_MESSAGE",
        "SEND_MESSAGE_SIMPLE", "SYS_SEND_MESSAGE",
    ],
    "event": ["GET_EVENTS", "DELETE_INCOMING", "DELETE_INCOMING_EVENTS"],
    "rtt": ["CONNECT", "HEARTBEAT", "DISCONNECT", "RESYNC"],
    "presence": ["SYS_GET_ONLINE"],
}  # fmt: skip


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
        st.text(max_size=20), st.sampled_from(["p1", "fuzz", "healthy", "System", "inbox", "sent"]),
    )  # fmt: skip
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=12,
    )


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """An RTT request with real service and operation names and any data, or a deep one."""
    service = draw(st.sampled_from([*OPERATIONS, "nope"]))
    operation = draw(st.sampled_from(OPERATIONS.get(service, ["NOPE"])))
    body = {"service": service, "operation": operation, "data": draw(json_values())}
    if draw(st.booleans()):
        body["requestId"] = draw(json_values())
    if draw(st.integers(0, 20)) == 0:
        depth = draw(st.integers(60, 400))
        return b'{"service":"messaging","operation":"GET_MESSAGES","data":%b}' % (
            b"[" * depth + b"]" * depth
        )
    return orjson.dumps(body)


def payloads() -> st.SearchStrategy[bytes]:
    """Requests mostly; any text or bytes now and then."""
    return st.one_of(requests(), requests(), requests(), requests(), text_payloads())


class Healthy(threading.Thread):
    """A signed-in client beside the fuzz: every 50 ms a request on its socket and a send to
    it over S2S, each of which must be answered (the push arrive) within a second."""

    def __init__(self, process: NodeProcess) -> None:
        super().__init__(daemon=True)
        self.url = f"{process.ws_url}?token={token('healthy')}"
        self.http = httpx.Client(base_url=process.url, timeout=5.0)
        self.ws: ClientConnection | None = None
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.rounds = 0
        self.failures: list[str] = []
        self.slowest = 0.0

    def one_round(self, ws: ClientConnection, request_id: int) -> None:
        ws.send(orjson.dumps({"service": "messaging", "operation": "GET_MESSAGE_BOXES",
                                   "data": {}, "requestId": request_id}).decode())  # fmt: skip
        send = {
            **SERVER,
            "service": "messaging",
            "operation": "SYS_SEND_MESSAGE",
            "data": {
                "toProfileIds": ["healthy"],
                "contentJson": {"round": request_id},
                "fromJson": {"id": None, "name": "Healthy"},
            },
        }
        r = self.http.post("/s2sdispatcher", content=orjson.dumps(send))
        if r.status_code != 200:
            self.failures.append(f"S2S {r.status_code} {r.text[:200]}")
        replied = pushed = False
        while not (replied and pushed):
            frame = orjson.loads(ws.recv(1.0))
            replied = replied or frame.get("requestId") == request_id
            pushed = pushed or frame.get("data", {}).get("message", {}).get("content") == {
                "round": request_id
            }

    def run(self) -> None:
        try:
            with connect(self.url) as ws:
                ws.send(CONNECT.decode())
                assert orjson.loads(ws.recv(5))["operation"] == "CONNECT"
                self.ready.set()
                while not self.stopping.wait(0.05):
                    started = time.monotonic()
                    self.one_round(ws, self.rounds)
                    self.slowest = max(self.slowest, time.monotonic() - started)
                    self.rounds += 1
        except (AssertionError, TimeoutError, WebSocketException, httpx.HTTPError) as e:
            self.failures.append(repr(e))
        finally:
            self.ready.set()

    def close(self) -> None:
        self.stopping.set()
        self.join(5)
        self.http.close()


class Fuzzed:
    def __init__(self, process: NodeProcess) -> None:
        self.process = process
        self.healthy = Healthy(process)
        self.rss_before = rss_bytes(process.pid)


@pytest.fixture(scope="module", params=["local", "redis"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    env = engine_env(request, request.param)
    process = NodeProcess(APPS_TOML, directory=tmp_path_factory.mktemp("wsfuzz"), env=env)
    process.start()
    fuzzed = Fuzzed(process)
    fuzzed.healthy.start()
    assert fuzzed.healthy.ready.wait(5) and not fuzzed.healthy.failures, fuzzed.healthy.failures
    try:
        yield fuzzed
    finally:
        fuzzed.healthy.close()
        process.stop()


def answer(port: int, connect_first: bool, stream: bytes) -> bytes:
    """Upgrade, maybe CONNECT, write `stream`, half-close; return all the node sent after its
    101, once it has closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_SECONDS) as sock:
        sock.sendall(upgrade_request(f"/rtt?token={token('fuzz')}"))
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, "no 101"
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        sock.sendall((masked_frame(CONNECT) if connect_first else b"") + stream)
        with contextlib.suppress(OSError):  # the node may have closed already
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + ANSWER_SECONDS
        chunks = [rest]
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
                assert time.monotonic() < deadline, "the node did not close"
    return b"".join(chunks)


def check_text(payload: bytes) -> str:
    """Check a text frame's shape; return what it was (for hypothesis' statistics)."""
    frame = orjson.loads(payload)
    assert isinstance(frame, dict), frame
    if frame.get("operation") == "DISCONNECT" and frame.get("service") == "rtt":
        assert isinstance(frame["data"]["reason"], str) and frame["data"]["reasonCode"], frame
        return "DISCONNECT"
    if "status" in frame:
        assert frame["status"] < 500, frame
        if frame["status"] != 200:
            assert frame.keys() >= ERROR_KEYS, frame
        return f"reply {frame['status']}"
    return f"{frame.get('service')}/{frame.get('operation')}"


@FUZZ
@given(
    connect_first=st.booleans(),
    stream=st.one_of(streams(payloads(), odds=4), streams(payloads(), max_units=12, odds=400)),
    tail=st.one_of(st.just(b""), st.binary(max_size=16)),
)
def test_hostile_streams_get_documented_answers(node, connect_first, stream, tail):
    """Fails if some client stream makes the node answer anything undocumented (a close code
    outside RFC 6455's and rtt's, 1011, a reply of 500 or more, a frame that is not JSON), or
    not answer and close within ANSWER_SECONDS."""
    answered = answer(node.process.port, connect_first, wire(stream) + tail)
    codes = DOCUMENTED | client_close_codes(stream)
    for opcode, payload in server_frames(answered):
        if opcode == TEXT:
            event(check_text(payload))
        elif opcode == CLOSE:
            code = int.from_bytes(payload[:2], "big") if payload else None
            event(f"closed {code}")
            assert code is None or code in codes, code
        else:
            assert opcode == PONG, opcode
    assert node.process.alive()


def test_the_node_stayed_healthy_and_bounded(node):
    """Fails if the fuzz above made the node stop serving the healthy client promptly, or grow
    its RSS past RSS_BOUND (run after the fuzz, on the same node)."""
    healthy = node.healthy
    growth = rss_bytes(node.process.pid) - node.rss_before
    print(
        f"\nWebSocket fuzz: RSS {node.rss_before / 2**20:.1f} MiB + {growth / 2**20:.1f} MiB;"
        f" healthy client {healthy.rounds} rounds, slowest {healthy.slowest * 1000:.0f} ms"
    )
    assert not healthy.failures, healthy.failures[:5]
    assert healthy.rounds > 0
    assert healthy.slowest < 1.0, f"the healthy client waited {healthy.slowest:.2f} s"
    assert growth < RSS_BOUND
