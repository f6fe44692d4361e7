"""Hypothesis fuzz of the RFC 6455 parser, sans I/O: any byte stream, split anywhere, yields
whole frames or a ProtocolError with a documented close code, never another exception."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rtt.errors import CloseCode
from rtt.websocket import frames
from tests.fuzz.frame_streams import close_payload, streams, wire

PARSE_CODES = {CloseCode.PROTOCOL_VIOLATION, CloseCode.TOO_BIG}  # what `parse` may fail with
CLOSE_CODES = {CloseCode.PROTOCOL_VIOLATION, CloseCode.INVALID_DATA}  # and `close_reply`
FUZZ = settings(max_examples=400, deadline=None, database=None)


def parse_all(data: bytes, max_size: int) -> tuple[list[tuple[int, bool, bytes]], int | None]:
    """Every whole frame in `data`, and the close code parsing stopped with (None: the rest
    is an incomplete frame). Each frame is checked against what `parse` promises."""
    out: list[tuple[int, bool, bytes]] = []
    start = 0
    while True:
        try:
            frame = frames.parse(data, start, max_size)
        except frames.ProtocolError as e:
            assert e.code in PARSE_CODES, (e.code, e.reason)
            return out, e.code
        if frame is None:
            return out, None
        opcode, fin, payload, end = frame
        assert start < end <= len(data)
        assert opcode in (0, 1, 2, 8, 9, 10)
        if opcode >= 8:
            assert fin and len(payload) <= 125
        else:
            assert len(payload) <= max_size
        out.append((opcode, fin, payload))
        start = end


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 300))
def test_any_bytes_parse_to_frames_or_a_documented_close_code(data, max_size):
    """Fails if some byte string makes `parse` raise anything but a ProtocolError with 1002 or
    1009, or return a frame that breaks its own rules."""
    parse_all(data, max_size)


@FUZZ
@given(streams(), st.integers(0, 200), st.data())
def test_a_stream_parses_the_same_whatever_its_reads(stream, max_size, data):
    """Fails if a stream cut into arbitrary reads parses differently from the whole stream:
    an incomplete frame must be reported as such, wherever the cut falls."""
    raw = wire(stream)
    whole = parse_all(raw, max_size)
    cut = data.draw(st.integers(0, len(raw)))
    head, head_code = parse_all(raw[:cut], max_size)
    assert whole[0][: len(head)] == head
    if head_code is not None:  # a rule broken within the head is broken in the whole
        assert whole == (head, head_code)


@FUZZ
@given(st.one_of(close_payload(), st.binary(max_size=125)))
def test_any_close_body_is_echoed_or_refused_with_a_documented_code(payload):
    """Fails if a close frame's body makes `close_reply` raise anything but 1002 or 1007, or
    echo a code a peer may not send."""
    try:
        reply = frames.close_reply(payload)
    except frames.ProtocolError as e:
        assert e.code in CLOSE_CODES, (e.code, e.reason)
        return
    assert reply[0] == 0x88 and len(reply) - 2 == reply[1] <= 125
    if payload:
        assert reply[2:4] == payload[:2]
