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


async def test_pongs_count_against_the_budget_of_a_peer_that_does_not_read(tmp_path: Path):
    """Pins: pongs went straight to the transport with no bound, so a peer that pings and
    never reads grew the node's memory without limit. Pongs are now under the connection's
    byte budget (here 64 KiB): past it the socket is closed 4003."""
    settings = settings_for(
        tmp_path, socket_buffer_bytes=64 * 1024, reply_max_bytes=16 * 1024, close_timeout_seconds=10
    )
    async with running(settings) as server:
        raw = await open_raw(server.settings.port, rcvbuf=SMALL_RCVBUF)
        try:
            ping = masked_frame(b"p" * 125, PING)
            raw.writer.write(ping * (4 * 1024 * 1024 // len(ping)))  # 4 MB of pings, never read
            await asyncio.sleep(1.0)
            assert await close_code(raw) == 4003
        finally:
            raw.close()


async def test_a_peer_that_pings_and_never_reads_is_not_read_and_ends(tmp_path: Path):
    """Fails if a peer that pings without reading is read on (the node would produce pongs for
    as long as it sends) or is kept open: once its pongs are unread the node stops reading it,
    so its frames stop counting as activity and it is closed for silence (4002)."""
    settings = settings_for(tmp_path, heartbeat_seconds=0.5, close_timeout_seconds=10)
    async with running(settings) as server:
        raw = await open_raw(server.settings.port, rcvbuf=SMALL_RCVBUF)
        try:
            ping = masked_frame(b"p" * 125, PING)
            block = ping * (64 * 1024 // len(ping))
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
        try:
            for _ in range(60):  # 6 MB of stream: more than the kernel buffers hold
                await s2s.send(["p1"], {"text": "x" * 100_000})
        finally:
            await s2s.close()
        raw = await open_raw(server.settings.port, connect=False, rcvbuf=SMALL_RCVBUF)
        try:
            data = {"since": 0, "auth": {"token": token("p1")}}
            connect = {"service": "rtt", "operation": "CONNECT", "data": data}
            raw.send(TEXT, orjson.dumps(connect))
            await asyncio.sleep(2.0)  # never read meanwhile
            assert await close_code(raw) == 4003
        finally:
            raw.close()
