"""Differential test of rtt's WebSocket protocol against two independent implementations.

The same client byte stream goes to:
- rtt: the real `WebSocketProtocol`, after a real opening handshake, over a real socket pair
  (the test is its handler and records each message it is handed);
- wsproto's sans-I/O server connection (strict RFC 6455: incremental UTF-8, minimal lengths);
- for message sizes, the `websockets` sans-I/O server protocol with the same size limit.

Each must reach the same verdict: the same messages accepted, in order, then the same close
code (the peer's own code echoed, 1002, 1007 or 1009), or no close at all (the stream ended).
Every pong rtt sends answers a ping of the stream, in order (rtt answers only the latest of
the pings in one read, as RFC 6455 §5.5.3 allows; wsproto's user answers each).

Where rtt deliberately differs, the test says so and leaves the case out:
- close code 1014 (Bad Gateway, in the IANA registry) is a code a peer may send for rtt and
  `websockets`; wsproto's table predates it and refuses it;
- wsproto has no message size limit: size verdicts are compared with `websockets`, whose
  limit works as rtt's (a data frame is refused at its header if it would take the message
  over the limit), on streams without control frames: `websockets` also counts a ping inside
  a fragmented message against the message's remaining size, rtt bounds control frames by
  125 bytes only;
- `websockets` accepts non-minimal lengths, answers a 64-bit length with its top bit set with
  1009, fails a close frame in the middle of a fragmented message and leaves UTF-8 to its
  asyncio layer: none of that is compared with it.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import pytest
import uvloop
from hypothesis import example, given, settings
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.frames import Opcode
from websockets.protocol import Protocol as WebsocketsProtocol
from websockets.protocol import Side, State
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from rtt.websocket.protocol import ENDPOINT_KEY, Endpoint, WebSocketProtocol
from tests.fuzz.frame_streams import Sent, message, streams, wire
from tests.support.raw_ws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    masked_frame,
    server_frames,
    upgrade_request,
)

BIG = 1 << 20  # rtt's limit where sizes are not under test: no generated stream comes close
SMALL = 200  # the limit where they are
NO_STATUS = 1005  # an empty close frame, as both libraries report it
FUZZ = settings(max_examples=300, deadline=None, database=None)


@dataclass
class Verdict:
    messages: list[tuple[int, bytes]] = field(default_factory=list)
    close: int | None = None  # the close code sent, None if the stream just ended
    pongs: list[bytes] = field(default_factory=list)


class Recorder:
    """The handler rtt's protocol hands messages to."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []

    def received(self, payload: bytes, text: bool) -> None:
        self.messages.append((TEXT if text else BINARY, payload))

    def closed(self) -> None:
        pass

    def going_away(self) -> None:
        pass


async def _rtt(stream: bytes, max_size: int) -> Verdict:
    recorder = Recorder()
    endpoint = Endpoint(
        "/rtt",
        max_size,
        lambda connection, query: recorder,
        buffer_bytes=BIG,
        drain_timeout=5.0,
        close_timeout=5.0,
    )
    state = ServerState()
    protocol = WebSocketProtocol(Config("unused:app"), state, {ENDPOINT_KEY: endpoint})
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    theirs.setblocking(False)
    await loop.connect_accepted_socket(lambda: protocol, ours)
    await loop.sock_sendall(theirs, upgrade_request() + stream)
    theirs.shutdown(socket.SHUT_WR)
    received = bytearray()
    async with asyncio.timeout(5):
        while chunk := await loop.sock_recv(theirs, 1 << 16):
            received += chunk
        while state.connections:  # connection_lost has run: nothing more will be handed on
            await asyncio.sleep(0)
    theirs.close()
    head, _, rest = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    verdict = Verdict(recorder.messages)
    for opcode, payload in server_frames(rest):
        if opcode == PONG:
            verdict.pongs.append(payload)
        elif opcode == CLOSE:
            verdict.close = int.from_bytes(payload[:2], "big") if payload else NO_STATUS
        else:
            raise AssertionError(f"rtt's protocol wrote frame {opcode} on its own")
    return verdict


def rtt_verdict(stream: bytes, max_size: int = BIG) -> Verdict:
    return uvloop.run(_rtt(stream, max_size))  # the loop rtt serves on


def wsproto_verdict(stream: bytes) -> Verdict:
    connection = Connection(ConnectionType.SERVER)
    connection.receive_data(stream)
    verdict = Verdict()
    parts: list[bytes] = []
    for event in connection.events():
        if isinstance(event, TextMessage | BytesMessage):
            data = event.data.encode() if isinstance(event, TextMessage) else bytes(event.data)
            parts.append(data)
            if event.message_finished:
                opcode = TEXT if isinstance(event, TextMessage) else BINARY
                verdict.messages.append((opcode, b"".join(parts)))
                parts = []
        elif isinstance(event, Ping):
            verdict.pongs.append(bytes(event.payload))
        elif isinstance(event, CloseConnection):
            verdict.close = event.code
            break
    return verdict


def websockets_verdict(stream: bytes, max_size: int) -> Verdict:
    protocol = WebsocketsProtocol(Side.SERVER, state=State.OPEN, max_size=max_size)
    protocol.receive_data(stream)
    verdict = Verdict()
    opcode, parts = TEXT, []
    for frame in protocol.events_received():
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            opcode, parts = (TEXT if frame.opcode == Opcode.TEXT else BINARY), []
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            parts.append(bytes(frame.data))
            if frame.fin:
                verdict.messages.append((opcode, b"".join(parts)))
        elif frame.opcode == Opcode.PING:
            verdict.pongs.append(bytes(frame.data))
    if protocol.close_sent is not None:
        verdict.close = protocol.close_sent.code
    return verdict


def is_subsequence(short: list[bytes], long: list[bytes]) -> bool:
    rest = iter(long)
    return all(any(item == other for other in rest) for item in short)


def assert_same(ours: Verdict, reference: Verdict, name: str) -> None:
    assert ours.messages == reference.messages, f"messages differ from {name}"
    assert ours.close == reference.close, f"close {ours.close} != {name}'s {reference.close}"
    assert is_subsequence(ours.pongs, reference.pongs), f"a pong answers no ping ({name})"
    if reference.pongs and reference.close is None:
        assert ours.pongs and ours.pongs[-1] == reference.pongs[-1], "the last ping unanswered"


def sends_1014(stream: list[Sent]) -> bool:
    return any(s.opcode == CLOSE and s.payload[:2] == b"\x03\xf6" for s in stream)


def frame(opcode: int, payload: bytes = b"", **options: object) -> bytes:
    return masked_frame(payload, opcode, **options)  # type: ignore[arg-type]


EDGE_CASES = {
    "fragmented text, a ping between": frame(TEXT, b"he", fin=False)
    + frame(PING, b"p")
    + frame(CONTINUATION, b"llo"),
    "a character split across fragments": frame(TEXT, "é".encode()[:1], fin=False)
    + frame(CONTINUATION, "é".encode()[1:]),
    "invalid UTF-8 in a first fragment": frame(TEXT, b"\xff", fin=False)
    + frame(CONTINUATION, b"x", fin=False),
    "a text message ending mid-character": frame(TEXT, "é".encode()[:1], fin=False)
    + frame(CONTINUATION, b""),
    "a close in the middle of a fragmented message": frame(TEXT, b"a", fin=False)
    + frame(CLOSE, (1000).to_bytes(2, "big")),
    "a new message before the last one ended": frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"),
    "a stray continuation": frame(CONTINUATION, b"x"),
    "a fragmented ping": frame(PING, b"x", fin=False),
    "a 126-byte ping": frame(PING, b"x" * 126),
    "an empty close": frame(CLOSE),
    "a one-byte close": frame(CLOSE, b"\x03"),
    "close 999": frame(CLOSE, (999).to_bytes(2, "big")),
    "close 1004": frame(CLOSE, (1004).to_bytes(2, "big")),
    "close 1013": frame(CLOSE, (1013).to_bytes(2, "big")),
    "close 1005": frame(CLOSE, (1005).to_bytes(2, "big")),
    "close 1015": frame(CLOSE, (1015).to_bytes(2, "big")),
    "close 1016": frame(CLOSE, (1016).to_bytes(2, "big")),
    "close 3000 and a reason": frame(CLOSE, (3000).to_bytes(2, "big") + "ok ✓".encode()),
    "close 4999": frame(CLOSE, (4999).to_bytes(2, "big")),
    "close 5000": frame(CLOSE, (5000).to_bytes(2, "big")),
    "a close reason not UTF-8": frame(CLOSE, (1000).to_bytes(2, "big") + b"\xc3"),
    "data after the close": frame(CLOSE, (1000).to_bytes(2, "big")) + frame(TEXT, b"late"),
    "rsv1": frame(TEXT, b"x", rsv=0x40),
    "rsv3": frame(TEXT, b"x", rsv=0x10),
    "unmasked": frame(TEXT, b"x", mask=False),
    "opcode 3": frame(0x3, b""),
    "opcode 0xB": frame(0xB, b""),
    "16-bit length for 5 bytes": frame(BINARY, b"12345", form=16),
    "64-bit length for 300 bytes": frame(BINARY, b"x" * 300, form=64),
    "64-bit length with its top bit set": bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big"),
    "16-bit length at 126": frame(BINARY, b"x" * 126),
    "64-bit length at 65536": frame(BINARY, b"x" * 65536),
    "binary, not UTF-8": frame(BINARY, b"\xff\xfe"),
    "a pong, unsolicited": frame(PONG, b"hi") + frame(TEXT, b"after"),
}


@pytest.mark.parametrize("stream", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_cases_get_wsprotos_verdict(stream):
    """Fails if rtt accepts, refuses or closes a hand-picked edge case otherwise than wsproto."""
    assert_same(rtt_verdict(stream), wsproto_verdict(stream), "wsproto")


@FUZZ
@given(streams())
@example([Sent(frame(TEXT, b"\xf0\x9f", fin=False), TEXT, b"\xf0\x9f")])
def test_streams_get_wsprotos_verdict(stream):
    """Fails if some client stream is accepted, refused or closed by rtt otherwise than by
    wsproto (apart from close code 1014, see the module docstring)."""
    if sends_1014(stream):
        return
    raw = wire(stream)
    assert_same(rtt_verdict(raw), wsproto_verdict(raw), "wsproto")


SIZE_CASES = {
    "a message at the limit": frame(BINARY, b"x" * SMALL),
    "a message one over": frame(BINARY, b"x" * (SMALL + 1)),
    "fragments up to the limit": frame(TEXT, b"x" * 100, fin=False)
    + frame(CONTINUATION, b"y" * (SMALL - 100)),
    "fragments one over": frame(TEXT, b"x" * 100, fin=False)
    + frame(CONTINUATION, b"y" * 50, fin=False)
    + frame(CONTINUATION, b"z" * (SMALL - 149)),
    "an over-long header, no payload": bytes([0x82, 0xFE]) + (SMALL + 1).to_bytes(2, "big"),
    "close 1014": frame(CLOSE, (1014).to_bytes(2, "big")),
}


@pytest.mark.parametrize("stream", SIZE_CASES.values(), ids=SIZE_CASES.keys())
def test_size_edge_cases_get_the_websockets_verdict(stream):
    """Fails if rtt's size limit (or its close code 1014) differs from `websockets` on a
    hand-picked case, the limit being the same."""
    ours, reference = rtt_verdict(stream, SMALL), websockets_verdict(stream, SMALL)
    assert ours.messages == reference.messages
    assert ours.close == reference.close, (ours.close, reference.close)


def sized_messages() -> st.SearchStrategy[list[Sent]]:
    """Data messages only, valid UTF-8, around the SMALL limit, whole or fragmented."""
    payloads = st.text(max_size=260).map(str.encode)
    messages = message(payloads, controls=False)
    return st.lists(messages, max_size=4).map(lambda ms: [f for m in ms for f in m])


@FUZZ
@given(sized_messages())
def test_message_sizes_get_the_websockets_verdict(stream):
    """Fails if rtt's size limit accepts or refuses a message otherwise than `websockets` with
    the same limit (1009 at the header of the frame that would take a message over it)."""
    if any(s.data[1] & 0x7F == 127 and s.data[2] & 0x80 for s in stream):
        return  # a 64-bit length with its top bit set: 1002 for rtt, 1009 for websockets
    if any(s.data[0] & 0x70 or not s.data[1] & 0x80 for s in stream):
        return  # reserved bits, no mask: 1002 everywhere, and no size verdict
    if any(_non_minimal(s.data) for s in stream):
        return  # non-minimal lengths: 1002 for rtt, accepted by websockets
    raw = wire(stream)
    ours, reference = rtt_verdict(raw, SMALL), websockets_verdict(raw, SMALL)
    assert ours.messages == reference.messages
    assert ours.close == reference.close, (ours.close, reference.close)


def _non_minimal(data: bytes) -> bool:
    n = data[1] & 0x7F
    if n == 126:
        return int.from_bytes(data[2:4], "big") < 126
    if n == 127:
        return int.from_bytes(data[2:10], "big") < 65536
    return False
