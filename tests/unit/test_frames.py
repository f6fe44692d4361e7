"""RFC 6455 frames and the opening handshake, sans I/O: edges a live socket rarely shows."""

import os

import pytest

from rtt.errors import CloseCode
from rtt.websocket import frames, handshake


def masked(first: int, payload: bytes, *, length: bytes | None = None) -> bytes:
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    if length is None:
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return bytes([first]) + length + key + body


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_parse_reads_every_length_encoding_and_unmasks(size):
    """Fails if a 7-bit, 16-bit or 64-bit length is misread or the mask is not removed."""
    payload = os.urandom(size)
    data = masked(0x81, payload) + b"next"
    assert frames.parse(data, 0, 1 << 20) == (frames.TEXT, True, payload, len(data) - 4)


def test_parse_waits_for_a_whole_frame():
    """Fails if a frame cut anywhere (header, mask, payload) is not reported incomplete."""
    data = masked(0x82, b"x" * 300)
    for cut in range(len(data)):
        assert frames.parse(data[:cut], 0, 1 << 20) is None
    assert frames.parse(bytearray(b"--" + data), 2, 1 << 20) is not None


def test_parse_refuses_a_declared_length_over_the_limit_before_reading_it():
    """Fails if a frame over max_size is buffered instead of failing with 1009 at its header."""
    header = bytes([0x81, 0x80 | 127]) + (1 << 40).to_bytes(8, "big")
    with pytest.raises(frames.ProtocolError) as e:
        frames.parse(header, 0, 1 << 20)
    assert e.value.code == CloseCode.TOO_BIG


def test_text_frame_headers():
    """Fails if a server frame is masked or its length header is wrong."""
    assert frames.text_frame(b"hi") == b"\x81\x02hi"
    assert frames.text_frame(b"x" * 126)[:4] == b"\x81\x7e\x00\x7e"
    assert frames.text_frame(b"x" * 65536)[:10] == b"\x81\x7f" + (65536).to_bytes(8, "big")


def test_close_frame_reason_fits_without_splitting_a_character():
    """Fails if a long reason makes a close frame over 125 bytes or cuts a UTF-8 character."""
    frame = frames.close_frame(4001, "é" * 100)
    assert frame[0] == 0x88 and frame[1] <= 125
    assert int.from_bytes(frame[2:4], "big") == 4001
    frame[4:].decode()
    assert frames.close_frame(None) == b"\x88\x00"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),
        ((1005).to_bytes(2, "big"), 1002),
        ((999).to_bytes(2, "big"), 1002),
        ((1000).to_bytes(2, "big") + b"\xff", 1007),
    ],
    ids=["one-byte", "reserved-1005", "below-1000", "reason-not-utf8"],
)
def test_close_reply_refuses_a_bad_close_body(payload, code):
    """Fails if a close frame RFC 6455 §5.5.1 forbids is echoed instead of failing."""
    with pytest.raises(frames.ProtocolError) as e:
        frames.close_reply(payload)
    assert e.value.code == code


def test_handshake_reads_header_lists_and_repeats():
    """Fails if `Connection: keep-alive, Upgrade` or a repeated header is not understood."""
    request = (
        b"GET /rtt?token=abc&x=1 HTTP/1.1\r\nhost: h\r\nconnection: keep-alive, Upgrade\r\n"
        b"upgrade: WebSocket\r\nsec-websocket-version: 13\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    upgrade = handshake.upgrade(request, "/rtt")
    assert upgrade.query == {"token": "abc", "x": "1"}
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in upgrade.response
    with pytest.raises(handshake.Refused) as e:
        handshake.upgrade(request.replace(b"GET", b"POST"), "/rtt")
    assert e.value.response.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(
    "header",
    [
        bytes([0x81, 0xFE]) + (125).to_bytes(2, "big"),
        bytes([0x81, 0xFE]) + (0).to_bytes(2, "big"),
        bytes([0x81, 0xFF]) + (65535).to_bytes(8, "big"),
        bytes([0x81, 0xFF]) + (5).to_bytes(8, "big"),
        bytes([0x81, 0xFF]) + (1 << 63).to_bytes(8, "big"),
        bytes([0x81, 0xFF]) + ((1 << 63) | 200).to_bytes(8, "big"),
        bytes([0x89, 0xFE]),  # a control frame can't have an extended length at all
    ],
    ids=[
        "16-bit-125",
        "16-bit-0",
        "64-bit-65535",
        "64-bit-5",
        "64-bit-msb",
        "64-bit-msb-small",
        "ping-126",
    ],
)
def test_parse_refuses_a_length_rfc_6455_forbids_with_1002(header):
    """Pins: a 64-bit length with its most significant bit set answered 1009 (it is a protocol
    violation, 1002) and non-minimal length encodings were accepted (RFC 6455 §5.2: "the
    minimal number of bytes MUST be used"). Each fails at its header, before any payload."""
    with pytest.raises(frames.ProtocolError) as e:
        frames.parse(header + os.urandom(4), 0, 1 << 20)
    assert e.value.code == CloseCode.PROTOCOL_VIOLATION


@pytest.mark.parametrize("size", [125, 126, 65535, 65536])
def test_parse_accepts_every_minimal_length_at_its_bounds(size):
    """Fails if the minimal-encoding rule refuses a length at the edge of its form."""
    data = masked(0x82, b"y" * size)
    assert frames.parse(data, 0, 1 << 20) == (frames.BINARY, True, b"y" * size, len(data))


def test_parse_limit_applies_to_data_frames_only():
    """Fails if a small max_size (what remains of a fragmented message's budget) refuses a
    ping in the middle of the message: control frames are bounded by 125 bytes, not by it."""
    ping = masked(0x89, b"p" * 100)
    assert frames.parse(ping, 0, 10) == (frames.PING, True, b"p" * 100, len(ping))
    with pytest.raises(frames.ProtocolError) as e:
        frames.parse(masked(0x00, b"c" * 11), 0, 10)
    assert e.value.code == CloseCode.TOO_BIG
