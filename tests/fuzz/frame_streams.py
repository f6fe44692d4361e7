"""Hypothesis strategies for what a WebSocket client may send: byte streams of frames, mostly
well-formed (so the fuzz gets past the first header), with every RFC 6455 rule broken now and
then. Shared by the parser fuzz, the live fuzz and the differential test.

A stream is a list of `Sent` frames; `b"".join(f.data for f in stream)` is what goes on the
wire. Each keeps what it is, so a test can say which close codes the client itself sent.
`odds` is the 1-in-N chance that a frame breaks a rule, or that a unit is a stray frame: low
to test what breaks, high to get deep into what a valid stream carries.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from tests.support.raw_ws import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, masked_frame

UNKNOWN_OPCODES = (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)
CLOSE_CODES = (
    0, 999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
    1014, 1015, 1016, 2999, 3000, 3999, 4000, 4999, 5000, 65535,
)  # fmt: skip


@dataclass(frozen=True)
class Sent:
    """One frame as written: its bytes, and its opcode and payload as meant."""

    data: bytes
    opcode: int
    payload: bytes


def wire(stream: list[Sent]) -> bytes:
    return b"".join(sent.data for sent in stream)


def client_close_codes(stream: list[Sent]) -> set[int]:
    """Codes in the client's own close frames: the server may echo any of them."""
    return {
        int.from_bytes(s.payload[:2], "big")
        for s in stream
        if s.opcode == CLOSE and len(s.payload) >= 2
    }


ODDS = 25


def rarely(odds: int) -> st.SearchStrategy[bool]:
    """True 1 time in `odds` (hypothesis favours small integers: an integer draw would not do)."""
    return st.sampled_from([False] * (odds - 1) + [True])


@st.composite
def mutated(
    draw: st.DrawFn, opcode: int, payload: bytes, fin: bool = True, odds: int = ODDS
) -> Sent:
    """A frame, now and then (1 in `odds`) with a rule broken: a reserved bit, no mask, a
    non-minimal length, or a 64-bit length with its top bit set and no payload."""
    rsv, mask, form = 0, True, None
    broken = draw(st.sampled_from(["rsv", "mask", "64", "16", "msb"])) if draw(rarely(odds)) else ""
    if broken == "rsv":
        rsv = draw(st.sampled_from([0x40, 0x20, 0x10]))
    elif broken == "mask":
        mask = False
    elif broken == "64":
        form = 64 if len(payload) < 65536 else None
    elif broken == "16" and len(payload) < 126:
        form = 16
    elif broken == "msb":
        length = (1 << 63 | len(payload)).to_bytes(8, "big")
        header = bytes([(0x80 if fin else 0) | opcode, 0xFF]) + length
        return Sent(header + b"\0\0\0\0", opcode, payload)
    data = masked_frame(payload, opcode, fin=fin, mask=mask, rsv=rsv, form=form)
    return Sent(data, opcode, payload)


def text_payloads(max_size: int = 60) -> st.SearchStrategy[bytes]:
    """UTF-8 text mostly, invalid bytes sometimes."""
    return st.one_of(
        st.text(max_size=max_size).map(str.encode),
        st.text(max_size=max_size).map(str.encode),
        st.binary(max_size=max_size),
    )


@st.composite
def message(
    draw: st.DrawFn,
    payloads: st.SearchStrategy[bytes] | None = None,
    odds: int = ODDS,
    controls: bool = True,
) -> list[Sent]:
    """One text or binary message, whole or split into fragments at any byte (a character
    included), with control frames in between now and then (unless `controls` is False)."""
    opcode = draw(st.sampled_from([TEXT, BINARY]))
    payload = draw(payloads if payloads is not None else text_payloads())
    cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
    parts = [payload[a:b] for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    frames: list[Sent] = []
    for i, part in enumerate(parts):
        if i and controls and draw(rarely(5)):
            frames.append(draw(control(odds)))
        last = i == len(parts) - 1
        frames.append(draw(mutated(opcode if i == 0 else CONTINUATION, part, last, odds)))
    return frames


@st.composite
def close_payload(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return b""
    if kind == 1:
        return draw(st.binary(min_size=1, max_size=1))
    code = draw(st.one_of(st.sampled_from(CLOSE_CODES), st.integers(0, 65535)))
    reason = draw(st.one_of(st.text(max_size=40).map(str.encode), st.binary(max_size=40)))
    return code.to_bytes(2, "big") + reason[:123]


@st.composite
def control(draw: st.DrawFn, odds: int = ODDS) -> Sent:
    """A ping, a pong or a close; rarely over 125 bytes or fragmented."""
    opcode = draw(st.sampled_from([PING, PING, PONG, CLOSE]))
    if opcode == CLOSE:
        payload = draw(close_payload())
    else:
        payload = draw(st.binary(max_size=130 if draw(rarely(odds)) else 125))
    fin = not draw(rarely(odds))
    return draw(mutated(opcode, payload, fin, odds))


@st.composite
def odd_frame(draw: st.DrawFn) -> list[Sent]:
    """A frame out of place: a stray continuation, or an unknown opcode."""
    opcode = draw(st.sampled_from([CONTINUATION, *UNKNOWN_OPCODES]))
    payload = draw(st.binary(max_size=20))
    return [Sent(masked_frame(payload, opcode, fin=draw(st.booleans())), opcode, payload)]


@st.composite
def unit(draw: st.DrawFn, payloads: st.SearchStrategy[bytes] | None, odds: int) -> list[Sent]:
    """A message (mostly), a control frame, or (1 in `odds`) a stray frame."""
    if draw(rarely(odds)):
        return draw(odd_frame())
    if draw(rarely(3)):
        return [draw(control(odds))]
    return draw(message(payloads, odds))


def streams(
    payloads: st.SearchStrategy[bytes] | None = None, max_units: int = 8, odds: int = 4
) -> st.SearchStrategy[list[Sent]]:
    """A client's whole stream: a few messages and control frames, in any order."""
    return st.lists(unit(payloads, odds), max_size=max_units).map(
        lambda parts: [sent for part in parts for sent in part]
    )
