"""The fan-out generator counts a frame the same whether its fast path or a full parse reads it."""

from __future__ import annotations

import orjson
import pytest

from loadtest.counting import Tally
from loadtest.targets import PeerSocket, RttSocket, RttTarget
from loadtest.wsclient import mask

MESSAGE = {
    "msgbox": "inbox", "msgId": "bcd7", "read": False, "mbCr": 1, "mbUp": 1, "mbVer": 1,
    "message": {"from": {"id": None, "name": "bench"}, "to": ["bench-0"], "sentAt": 1},
}  # fmt: skip


def rtt_frame(seq: int, t: int, *, seq_first: bool = True) -> bytes:
    """As rtt renders it (`{"seq":N,` first), or with the same fields in another order."""
    data = {**MESSAGE, "message": {**MESSAGE["message"], "content": {"t": t}}}
    frame = {"service": "messaging", "operation": "INCOMING", "data": data}
    return orjson.dumps({"seq": seq, **frame} if seq_first else {**frame, "seq": seq})


def peer_frame(seq: int, t: int, *, seq_first: bool = True) -> bytes:
    return b'42["message",' + rtt_frame(seq, t, seq_first=seq_first) + b"]"


class Transport:
    def __init__(self, written: list[bytes]) -> None:
        self.write = written.append


async def sockets() -> tuple[RttSocket, PeerSocket, Tally]:
    tally = Tally()
    rtt = RttSocket(RttTarget([], "local"), "127.0.0.1", 1, "bench-0", tally)
    peer = PeerSocket("127.0.0.1", 1, "/", "bench-0", tally)
    for s in (rtt, peer):
        s.ready.set_result(None)  # logged in: every message now is a stream frame or a ping
    return rtt, peer, tally


@pytest.mark.parametrize("seq_first", [True, False])
async def test_seq_and_latency_are_counted_alike_by_fast_path_and_full_parse(seq_first):
    rtt, peer, tally = await sockets()
    assert (rtt.fast.match(rtt_frame(1, 5, seq_first=seq_first)) is not None) is seq_first
    assert (peer.fast.match(peer_frame(1, 5, seq_first=seq_first)) is not None) is seq_first
    for s, frame in ((rtt, rtt_frame), (peer, peer_frame)):
        for seq, t in ((1, 1_000), (2, 2_000), (2, 2_000), (5, 3_000), (4, 4_000)):
            s.on_message(frame(seq, t, seq_first=seq_first), 10_000)
    assert (tally.received, tally.duplicates, tally.gaps) == (6, 4, 4)
    assert list(tally.latencies_ns) == [9_000, 8_000, 7_000] * 2
    assert tally.percentiles_ms(0.0, 1.0) == [0.01, 0.01]


async def test_frames_without_a_seq_are_not_counted_and_pings_are_answered():
    rtt, peer, tally = await sockets()
    written: list[bytes] = []
    peer.transport = Transport(written)
    rtt.on_message(b'{"service":"rtt","operation":"HEARTBEAT","data":null}', 1)
    peer.on_message(b"2", 1)
    peer.on_message(b'42["other",{"seq":1}]', 1)
    assert [mask(w[2:6], w[6:]) for w in written] == [b"3"]
    assert tally.received == tally.duplicates == 0
