"""Hostile input over HTTP (issue 8, item 6): a hypothesis fuzz of every route and body.

A real `rtt serve` process per engine takes S2S envelopes built from realistic keys and random
JSON values (stateless and session forms), raw garbage, wrong content types, malformed and
chunked framing, and every route and method. Each answer must be one of the documented ones:
JSON in the brainCloud shape with a documented status and reason code (never a 500, never a
non-JSON error), answered promptly. Meanwhile a healthy S2S client beside the fuzz keeps
being served, and the node's RSS stays within a bound.

Each request is sent raw (bytes exactly as generated) with `Connection: close`, and read until
the node closes, so a request the node never answers fails the example instead of hanging it.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loadtest.fanout import rss_bytes
from loadtest.node import NodeProcess
from tests.support.clients import SERVER
from tests.support.nodes import engine_env
from tests.support.raw_http import parse
from tests.support.server import APPS_TOML

EXAMPLES = 200
ANSWER_SECONDS = 3.0  # a whole request must be answered and closed within this
RSS_BOUND = 32 * 2**20  # growth allowed over the whole module, per engine
REASONS = {
    40001, 40304, 40358, 40365, 40383, 40384, 40595, 40598,
    40600, 40601, 40617, 40618, 40621, 40640, 40650,
}  # fmt: skip
STATUSES = {400, 403, 404, 405, 408, 409, 413, 429}
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Node:
    """The node under fuzz, a session it opened, and a healthy client beside the fuzz."""

    def __init__(self, process: NodeProcess) -> None:
        self.process = process
        self.port = process.port
        self.http = httpx.Client(base_url=process.url, timeout=5.0)
        status, body = self.s2s({"packetId": 0, "messages": [_auth()]})
        assert status == 200, body
        self.session = body["messageResponses"][0]["data"]["sessionId"]
        self.packets = itertools.count(1)
        self.rss_before = rss_bytes(process.pid)
        self.healthy = Healthy(process.url)

    def s2s(self, body: Any) -> tuple[int, Any]:
        r = self.http.post("/s2sdispatcher", content=orjson.dumps(body))
        return r.status_code, r.json()


class Healthy(threading.Thread):
    """Sends a message every 20 ms and remembers every answer that was not a prompt 200."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, timeout=5.0)
        self.stopping = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.slowest = 0.0

    def run(self) -> None:
        send = {
            **SERVER,
            "service": "messaging",
            "operation": "SYS_SEND_MESSAGE",
            "data": {
                "toProfileIds": ["healthy"],
                "contentJson": {"text": "still here"},
                "fromJson": {"id": None, "name": "Healthy"},
            },
        }
        while not self.stopping.wait(0.02):
            started = time.monotonic()
            try:
                r = self.http.post("/s2sdispatcher", content=orjson.dumps(send))
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
            except httpx.HTTPError as e:
                self.failures.append(repr(e))
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.sent += 1

    def check(self) -> None:
        assert not self.failures, self.failures[:5]
        assert self.sent > 0
        assert self.slowest < 1.0, f"the healthy client waited {self.slowest:.2f} s"


@pytest.fixture(scope="module", params=["local", "redis"])
def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Node]:
    env = {
        **engine_env(request, request.param),
        "RTT_HTTP_HEADER_TIMEOUT_SECONDS": "2",
        "RTT_HTTP_BODY_TIMEOUT_SECONDS": "2",
    }
    process = NodeProcess(APPS_TOML, directory=tmp_path_factory.mktemp("fuzz"), env=env)
    process.start()
    fuzzed = Node(process)
    fuzzed.healthy.start()
    try:
        yield fuzzed
    finally:
        fuzzed.healthy.stopping.set()
        fuzzed.healthy.join(5)
        fuzzed.http.close()
        fuzzed.healthy.http.close()
        rss_after = rss_bytes(process.pid) if process.alive() else 0
        print(
            f"\n[{request.param}] HTTP fuzz: RSS {fuzzed.rss_before / 2**20:.1f} ->"
            f" {rss_after / 2**20:.1f} MiB; healthy client {fuzzed.healthy.sent} sends,"
            f" slowest {fuzzed.healthy.slowest * 1000:.0f} ms"
        )
        process.stop()


@pytest.fixture
def served(node: Node) -> Iterator[Node]:
    """After each test: the healthy client was served throughout, RSS within its bound."""
    yield node
    node.healthy.check()
    grown = rss_bytes(node.process.pid) - node.rss_before
    assert grown < RSS_BOUND, f"RSS grew {grown / 2**20:.1f} MiB"
    assert node.process.alive()


# --- strategies ----------------------------------------------------------------------------

# every S2S operation, and a few a server may not call (client operations, unknown names)
PAIRS = [
    ("messaging", "SYS_SEND_MESSAGE"), ("messaging", "SYS_SEND_MESSAGE_SIMPLE"),
    ("messaging", "SYS_GET_MESSAGES"), ("messaging", "SYS_GET_MESSAGES_PAGE"),
    ("messaging", "SYS_GET_MESSAGES_PAGE_OFFSET"), ("messaging", "SYS_UPDATE_MESSAGE"),
    ("messaging", "SYS_DELETE_MESSAGE"), ("messaging", "SYS_DELETE_MESSAGES"),
    ("event", "SYS_SEND_EVENT_TO_PROFILES"), ("event", "SYS_SEND_RTT_ONLY"),
    ("rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN"), ("presence", "SYS_GET_ONLINE"),
    ("push", "SYS_GET_PENDING"), ("heartbeat", "HEARTBEAT"),
    ("messaging", "SEND_MESSAGE"), ("event", "GET_EVENTS"),
    ("authenticationV2", "AUTHENTICATE"), ("x", "SYS_SEND_MESSAGE"), ("messaging", ""),
]  # fmt: skip
PROFILES = ["p1", "p2", "System", "system", " p1", "\uff50\uff11", "", "\x00", "x" * 129]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what JSON encoders write
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(PROFILES),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=20,
)


def mostly(
    plausible: st.SearchStrategy[Any], other: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """`plausible` four times in five, so requests get past validation often enough to reach
    what lies behind it; `other` otherwise."""
    return st.sampled_from([plausible] * 4 + [other]).flatmap(lambda chosen: chosen)


profiles = mostly(st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(PROFILES) | st.text())
counts = mostly(st.integers(1, 100), st.integers(-3, 120) | st.sampled_from([2**53, 2**64 - 1]))
contents = st.dictionaries(st.sampled_from(["text", "subject", "x"]), json_values, max_size=4)
# every field an operation reads, with a plausible value (mostly: each also has odd ones)
FIELDS = {
    "toProfileIds": st.lists(profiles, min_size=1, max_size=6),
    "toIds": st.lists(profiles, min_size=1, max_size=6),
    "profileIds": st.lists(profiles, min_size=1, max_size=6),
    "msgIds": st.lists(st.text(max_size=33), max_size=4),
    "contentJson": contents,
    "eventData": contents,
    "fromJson": mostly(
        st.fixed_dictionaries({"id": st.none(), "name": st.text(min_size=1, max_size=20)}),
        st.fixed_dictionaries({}, optional={"id": profiles, "name": json_values}),
    ),
    "context": st.fixed_dictionaries(
        {"pagination": st.fixed_dictionaries({"rowsPerPage": counts, "pageNumber": counts})},
        optional={"searchCriteria": json_values, "sortCriteria": json_values},
    ),
    "text": st.text(max_size=40),
    "msgId": st.text(max_size=33),
    "msgVer": counts,
    "pageOffset": counts,
    "eventType": st.text(min_size=1, max_size=20),
    "fromProfileId": st.none() | profiles,
    "toId": profiles,
    "profileId": profiles,
    "ttlSeconds": counts,
    "limit": counts,
}
# every field present and plausible (operations ignore the fields they do not read), or a mix
data_objects = mostly(
    st.fixed_dictionaries(FIELDS),
    st.fixed_dictionaries({}, optional={k: v | json_values for k, v in FIELDS.items()}),
)


def _auth(**data: Any) -> dict[str, Any]:
    return {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": {**SERVER, **data}}


@st.composite
def operation(draw: st.DrawFn) -> dict[str, Any]:
    """A message: mostly a real service/operation with plausible data, sometimes not at all."""
    service, name = draw(st.sampled_from(PAIRS))
    message: dict[str, Any] = {
        "service": draw(mostly(st.just(service), json_values)),
        "operation": draw(mostly(st.just(name), json_values)),
        "data": draw(mostly(data_objects, json_values)),
    }
    for key in draw(mostly(st.just(()), st.sets(st.sampled_from(list(message)), max_size=1))):
        del message[key]
    return message


credentials = mostly(
    st.just(dict(SERVER)),
    st.fixed_dictionaries(
        {},
        optional={
            "appId": st.sampled_from(["demo", "quiet", "tight", "nope"]) | json_values,
            "serverName": st.just("backend") | json_values,
            "serverSecret": st.sampled_from([SERVER["serverSecret"], "wrong"]) | json_values,
        },
    ),
)


@st.composite
def stateless(draw: st.DrawFn) -> dict[str, Any]:
    return {**draw(credentials), **draw(operation())}


@st.composite
def session_packet(draw: st.DrawFn) -> dict[str, Any]:
    """A packet of a live session (SESSION), one that opens a session, or neither."""
    messages = draw(st.lists(operation(), min_size=1, max_size=6) | json_values)
    packet: dict[str, Any] = {"messages": messages}
    form = draw(st.sampled_from(["live", "live", "opens", "other"]))
    if form == "live":
        packet["sessionId"] = "SESSION"
    elif form == "opens" and isinstance(messages, list):
        messages.insert(0, {**_auth(), "data": draw(credentials)})
    elif form == "other":
        packet["sessionId"] = draw(json_values)
    if draw(st.integers(0, 9)):  # NEXT: the session's next packetId, filled in when sent
        packet["packetId"] = draw(mostly(st.just("NEXT"), st.integers(0, 10**6) | json_values))
    return packet


CONTENT_TYPES = [
    None,
    "application/json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=latin-1",
    "\x7f\x01",
]


def request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    length: bool = True,
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: fuzz", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers or []]
    if length:
        head.append(f"Content-Length: {len(body)}")
    return "\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body


def exchange(node: Node, raw: bytes) -> bytes:
    """Send `raw` and read everything until the node closes (within ANSWER_SECONDS)."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=ANSWER_SECONDS) as sock:
        sock.sendall(raw)
        chunks = []
        deadline = time.monotonic() + ANSWER_SECONDS
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except TimeoutError:
                silent = f"no answer within {ANSWER_SECONDS} s to {raw[:300]!r}"
                raise AssertionError(silent) from None
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def assert_error(body: Any, status: int) -> None:
    """A brainCloud error object with a documented reason."""
    assert isinstance(body, dict), body
    assert set(body) == {"status", "reason_code", "status_message", "severity"}, body
    assert body["status"] == status, body
    assert body["reason_code"] in REASONS, body
    assert body["severity"] == "ERROR" and isinstance(body["status_message"], str), body


def assert_documented(raw: bytes, sent: bytes) -> tuple[int, Any]:
    """The one answer to `sent`: JSON, a documented status, a brainCloud error if it is one."""
    answer = parse(raw)
    assert answer is not None, f"no answer to {sent[:300]!r}"
    status = answer.status
    assert status == 200 or status in STATUSES, (status, answer.body[:300], sent[:300])
    assert answer.headers.get("content-type", "").startswith("application/json"), raw[:300]
    body = orjson.loads(answer.body) if answer.body else None
    if status != 200 and not (isinstance(body, dict) and "messageResponses" in body):
        assert_error(body, status)
    return status, body


def assert_s2s_answer(raw: bytes, sent: bytes) -> None:
    status, body = assert_documented(raw, sent)
    if isinstance(body, dict) and "messageResponses" in body:
        assert set(body) == {"packetId", "messageResponses"}, body
        responses = body["messageResponses"]
        assert isinstance(responses, list) and 1 <= len(responses) <= 50, body
        for response in responses:
            if response["status"] != 200:
                assert_error(response, response["status"])
    elif status == 200:
        assert body["status"] == 200 and "data" in body, body


# --- the fuzz ------------------------------------------------------------------------------


@FUZZ
@given(
    envelope=stateless() | session_packet(),
    content_type=mostly(st.sampled_from(CONTENT_TYPES[:2]), st.sampled_from(CONTENT_TYPES)),
    key=mostly(st.none() | st.sampled_from(["k1", "k2"]), st.sampled_from(["", "k" * 256])),
)
def test_s2s_envelopes_get_documented_answers(served, envelope, content_type, key):
    """Pins: hostile S2S envelopes (realistic keys, random values, both forms, with and
    without an Idempotency-Key) could answer a 500 or a plain-text error; every answer is now
    a documented brainCloud one."""
    if envelope.get("sessionId") == "SESSION":
        envelope["sessionId"] = served.session
    if envelope.get("packetId") == "NEXT":
        envelope["packetId"] = next(served.packets)
    headers = [("Content-Type", content_type)] if content_type else []
    if key is not None:
        headers.append(("Idempotency-Key", key))
    sent = request("POST", "/s2sdispatcher", orjson.dumps(envelope), headers)
    assert_s2s_answer(exchange(served, sent), sent)


framing = st.one_of(
    st.tuples(
        st.just("length"), st.sampled_from(["-1", "abc", "1e3", "+5", "99999999999999999999"])
    ),
    st.tuples(st.just("huge"), st.integers(2 * 2**20 + 1, 2**62)),
    st.tuples(st.just("duplicate"), st.integers(0, 3)),
    st.tuples(st.just("chunked"), st.lists(st.integers(1, 50), max_size=5)),
    st.tuples(
        st.just("bad-chunk"), st.sampled_from([b"zz\r\n", b"-1\r\n", b"ffffffffffffffffff\r\n"])
    ),
    st.tuples(st.just("length+chunked"), st.just(None)),
)


@FUZZ
@given(body=st.binary(max_size=300) | json_values.map(orjson.dumps), frame=framing | st.none())
def test_raw_bodies_and_framing_get_documented_answers(served, body, frame):
    """Pins: garbage bytes, negative/huge/duplicate Content-Length and chunked bodies could
    answer a 500 or a plain-text error (uvicorn's "Invalid HTTP request received."); every
    answer is now JSON in the brainCloud shape, and sent at once."""
    kind, value = frame if frame else ("plain", None)
    if kind == "plain":
        sent = request("POST", "/s2sdispatcher", body)
    elif kind == "length":
        sent = request("POST", "/s2sdispatcher", b"", [("Content-Length", value)], length=False)
    elif kind == "huge":
        sent = request(
            "POST", "/s2sdispatcher", b"", [("Content-Length", str(value))], length=False
        )
    elif kind == "duplicate":
        headers = [("Content-Length", str(len(body))), ("Content-Length", str(len(body) + value))]
        sent = request("POST", "/s2sdispatcher", body, headers, length=False)
    elif kind in ("chunked", "bad-chunk", "length+chunked"):
        if kind == "chunked":
            chunks, rest = [], body
            for size in value:
                chunks.append(b"%x\r\n%s\r\n" % (len(rest[:size]), rest[:size]))
                rest = rest[size:]
            if rest:
                chunks.append(b"%x\r\n%s\r\n" % (len(rest), rest))
            encoded = b"".join(chunks) + b"0\r\n\r\n"
        else:
            encoded = (value or b"5\r\nhello\r\n") + b"0\r\n\r\n"
        headers = [("Transfer-Encoding", "chunked")]
        if kind == "length+chunked":
            headers.append(("Content-Length", str(len(encoded))))
        sent = request("POST", "/s2sdispatcher", encoded, headers, length=False)
    assert_s2s_answer(exchange(served, sent), sent)


ROUTES = ["/s2sdispatcher", "/healthz", "/readyz", "/", "/nope", "/s2sdispatcher/x",
          "/healthz?x=1", "//healthz", "/%00", "/rtt", "*"]  # fmt: skip
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"]


@FUZZ
@given(
    method=st.sampled_from(METHODS),
    path=st.sampled_from(ROUTES) | st.text(max_size=30).map(lambda s: "/" + s),
    body=st.binary(max_size=64),
    key=st.none()
    | st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
        max_size=300,
    ),
)
def test_every_route_and_method_gets_a_documented_answer(served, method, path, body, key):
    """Pins: unknown routes and wrong methods answered plain-text 404/405, and odd request
    lines uvicorn's plain-text 400; all are now JSON, and /healthz and /readyz answer 200."""
    headers = [("Idempotency-Key", key)] if key is not None else []
    try:
        sent = request(method, path, body, headers)
    except UnicodeEncodeError:
        sent = request(method, path.encode("utf-8").decode("latin-1"), body, headers)
    raw = exchange(served, sent)
    answer = parse(raw)
    assert answer is not None, sent
    if method == "HEAD":
        assert answer.status < 500, raw
        return
    status, body_json = assert_documented(raw, sent)
    route = path.split("?")[0]
    if route in ("/healthz", "/readyz") and method == "GET":
        assert (status, body_json) == (200, {"status": "ok"})
    if route == "/s2sdispatcher" and method == "POST":
        assert_s2s_answer(raw, sent)
