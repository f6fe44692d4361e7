"""Flow control on /rtt: one byte budget per connection, reading only as fast as the client
reads, replies at the client's pace, and any frame as a sign of life. Real sockets, real node."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from tests.support.clients import S2S, token
from tests.support.raw_ws import CLOSE, PING, PONG, TEXT, Raw, masked_frame, open_raw, raw_socket
from tests.support.server import running
from tests.support.server import test_settings as settings_for
from tests.support.waits import eventually

SMALL_RCVBUF = 16 * 1024  # the client's kernel buffer: what it does not read is felt at once


async def close_code(raw: Raw, timeout: float = 10.0) -> int:
    """Read (and drop) every frame up to the server's close frame; answer it; return its code
    once the server has closed the TCP connection."""
    while True:
        opcode, payload = await raw.recv(timeout)
        if opcode == CLOSE:
            break
    raw.send(CLOSE, payload[:2])
    async with asyncio.timeout(timeout):
        assert await raw.reader.read() == b"", "the server must close the TCP connection"
    return int.from_bytes(payload[:2], "big")


async def test_websocket_pings_keep_a_connected_socket_alive(tmp_path: Path):
    """Pins: pings did not count as activity, so a client keeping its socket alive with
    WebSocket pings (as many client libraries do) was closed 4002 after 2x heartbeatSeconds."""
    async with (
        running(settings_for(tmp_path, heartbeat_seconds=0.5)) as server,
        raw_socket(server.settings.port) as raw,
    ):
        deadline = time.monotonic() + 2.5  # five times the silence limit
        while time.monotonic() < deadline:
            raw.send(PING, b"alive")
            assert await raw.recv() == (PONG, b"alive")
            await asyncio.sleep(0.3)
        raw.send(TEXT, raw.request(1))
        reply = await raw.recv_json()
        assert reply["requestId"] == 1 and reply["status"] == 200, reply


async def test_pings_before_connect_do_not_hold_the_socket(tmp_path: Path):
    """Fails if pings alone keep an unauthenticated socket open past the CONNECT deadline
    (2x heartbeatSeconds from the upgrade): it could then hold a connection forever."""
    async with (
        running(settings_for(tmp_path, heartbeat_seconds=0.5)) as server,
        raw_socket(server.settings.port, connect=False) as raw,
    ):
        started = time.monotonic()
        for _ in range(20):
            raw.send(PING, b"")
            opcode, payload = await raw.recv()
            if opcode != PONG:
                break
            await asyncio.sleep(0.1)
        assert opcode == TEXT and orjson.loads(payload)["operation"] == "DISCONNECT", payload
        assert await close_code(raw) == 4000
        assert time.monotonic() - started < 2.0


async def test_a_read_full_of_pings_is_answered_with_one_pong(server):
    """Pins: every ping got its own pong, written at once: a peer sending pings made the node
    write (and, if it did not read, buffer) as much as it sent. RFC 6455 §5.5.3 lets an
    endpoint answer only the latest of several pings: a read is answered with one pong."""
    async with raw_socket(server.settings.port) as raw:
        count = 1000
        raw.writer.write(b"".join(masked_frame(b"%d" % i, PING) for i in range(count)))
        pongs = []
        while not pongs or pongs[-1] != b"%d" % (count - 1):
            opcode, payload = await raw.recv()
            assert opcode == PONG, (opcode, payload)
            pongs.append(payload)
        assert len(pongs) <= 10, f"{len(pongs)} pongs for one burst of {count} pings"
        raw.send(TEXT, raw.request(1))
        assert (await raw.recv_json())["requestId"] == 1


async def test_a_peer_that_does_not_read_its_replies_is_not_read(tmp_path: Path):
    """Pins: the node read a peer for as long as it sent, whatever it owed it: heartbeats (or
    pings) sent without reading the answers were read on until the answers filled the budget.
    Now, while the transport holds more than its high-water mark for a peer, the node does not
    read it: the peer's writes stall, no frame arrives, and the socket ends 4002 for silence."""
    settings = settings_for(tmp_path, heartbeat_seconds=0.5, close_timeout_seconds=10)
    async with running(settings) as server:
        raw = await open_raw(server.settings.port, rcvbuf=SMALL_RCVBUF)
        try:
            heartbeat = masked_frame(b'{"service":"rtt","operation":"HEARTBEAT","data":null}')
            block = heartbeat * (64 * 1024 // len(heartbeat))
            sent, stalled = 0, False
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                raw.writer.write(block)
                try:
                    await asyncio.wait_for(raw.writer.drain(), 0.5)
                except TimeoutError:
                    stalled = True  # the node stopped reading us
                    break
                sent += len(block)
            assert stalled, f"the node kept reading a peer that does not read ({sent} bytes)"
            assert await close_code(raw) == 4002
        finally:
            raw.close()


async def test_replies_wait_for_a_client_that_reads_slowly(tmp_path: Path):
    """Pins: replies were written with no regard for the client's pace, so a client that reads
    continuously, but slower than the node answers, was closed 4003 for pipelined requests.
    A reply is now written once the client has read what came before it."""
    async with running(settings_for(tmp_path)) as server:  # a budget of 1 MiB
        s2s = S2S(server)
        try:
            ids = [await s2s.send(["p1"], {"text": "x" * 30_000}) for _ in range(10)]
        finally:
            await s2s.close()
        async with raw_socket(server.settings.port, rcvbuf=SMALL_RCVBUF) as raw:
            # 20 replies of 300 KB: more than the kernel's buffers and the budget together
            count = 20  # the demo app's burst: none is rate limited
            data = {"msgbox": "inbox", "msgIds": ids}
            for i in range(count):
                raw.send(TEXT, raw.request(i, operation="GET_MESSAGES", data=data))
            replies = []
            while len(replies) < count:
                await asyncio.sleep(0.02)  # ~15 MB/s: continuous, slower than the node
                opcode, payload = await raw.recv()
                assert opcode == TEXT, (opcode, payload[:2])
                replies.append(orjson.loads(payload))
            assert [r["requestId"] for r in replies] == list(range(count))
            assert {r["status"] for r in replies} == {200}, {r["status"] for r in replies}


async def test_a_replay_to_a_client_that_never_reads_ends_4003(tmp_path: Path):
    """Pins: a replay waited for the transport to drain with no bound, and the silence timer
    counted that stuck task as activity, so a client that resumed with `since` and never read
    held its socket, its task and its store reads forever. It now ends 4003 once a frame has
    waited one silence period (2x heartbeatSeconds)."""
    settings = settings_for(tmp_path, heartbeat_seconds=0.5, close_timeout_seconds=10)
    async with running(settings) as server:
        s2s = S2S(server)
        raw = await open_raw(server.settings.port, connect=False, rcvbuf=SMALL_RCVBUF)
        try:
            for _ in range(60):  # 6 MB of stream: more than the kernel buffers hold
                await s2s.send(["p1"], {"text": "x" * 100_000})
            data = {"since": 0, "auth": {"token": token("p1")}}
            connect = {"service": "rtt", "operation": "CONNECT", "data": data}
            raw.send(TEXT, orjson.dumps(connect))

            async def online() -> bool:
                data = await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["p1"]})
                return bool(data["online"]["p1"])

            await eventually(online, timeout=2, what="the replaying socket joined")
            # still not reading: the node must let go of it by itself
            await eventually(online, lambda on: on is False, timeout=3, what="the socket let go")
            assert await close_code(raw) == 4003
        finally:
            raw.close()
            await s2s.close()
