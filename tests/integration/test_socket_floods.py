"""Floods against a node process: its resident memory (VmRSS) before, at the peak and after,
while a healthy client beside the flood keeps being served. Bounded in count and time.

The node runs as a subprocess (`rtt serve`, the engine under test), so its RSS is its own; the
flooding clients never read, or read nothing but what they must.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from socket import IPPROTO_TCP, TCP_INFO

import orjson
from websockets.exceptions import ConnectionClosed

from loadtest.fanout import rss_bytes
from loadtest.node import NodeProcess
from tests.support import server as test_server
from tests.support.clients import S2S, Rtt, socket, token
from tests.support.raw_ws import PING, TEXT, Raw, masked_frame, open_raw
from tests.support.server import APPS_TOML
from tests.support.waits import eventually

MB = 1024 * 1024
GROWTH_BOUND = 64 * MB  # what a flood may add to the node's resident memory
FLOOD_SECONDS = 3.0
SOCKETS = 20
HEARTBEAT = 1.0  # the silence period (and CONNECT deadline) is 2 s
CLOSE_TIMEOUT = 1.0
TCP_ESTABLISHED = 1  # tcp_info.tcpi_state (linux/tcp_states.h)


@contextlib.asynccontextmanager
async def node_process(directory: Path) -> AsyncIterator[NodeProcess]:
    """`rtt serve` on the engine under test, with short timers; always stopped."""
    env = {
        "RTT_ENGINE": test_server.ENGINE["engine"],
        "RTT_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "RTT_CLOSE_TIMEOUT_SECONDS": str(CLOSE_TIMEOUT),
    }
    if test_server.ENGINE["redis_url"]:
        env["RTT_REDIS_URL"] = test_server.ENGINE["redis_url"]
    node = NodeProcess(APPS_TOML, directory=directory, env=env)
    await asyncio.to_thread(node.start, 20.0)
    try:
        yield node
    finally:
        await asyncio.to_thread(node.stop, 5.0)


class Rss:
    """The node's VmRSS: a baseline, then sampled every 20 ms for the peak while a flood runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = rss_bytes(pid)
        self.peak = self.before
        self.after = self.before

    @contextlib.asynccontextmanager
    async def sampling(self) -> AsyncIterator[None]:
        async def sample() -> None:
            while True:
                self.peak = max(self.peak, rss_bytes(self.pid))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        try:
            yield
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            self.after = rss_bytes(self.pid)
            self.peak = max(self.peak, self.after)

    def __str__(self) -> str:
        return (
            f"RSS before {self.before / MB:.1f} MB, peak {self.peak / MB:.1f} MB, "
            f"after {self.after / MB:.1f} MB"
        )


async def flood(raw: Raw, block: bytes, until: float) -> int:
    """Write `block` after `block` until `until` (never more than the peer lets through),
    without reading; return the bytes written. A closed connection ends the flood early."""
    sent = 0
    with contextlib.suppress(ConnectionError, TimeoutError):
        while time.monotonic() < until:
            raw.writer.write(block)
            await asyncio.wait_for(raw.writer.drain(), max(0.0, until - time.monotonic()))
            sent += len(block)
    return sent


async def cut_off(raw: Raw, timeout: float) -> bool:
    """True if the node closes the connection within `timeout`, as the kernel's TCP state
    shows it (the node's FIN or RST arrived), still without reading: a flooder that read
    would let the node serve the backlog it pipelined (megabytes of requests in the socket
    buffers), and how fast the node got through it, not its bounds, would decide the test."""
    sock = raw.writer.get_extra_info("socket")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = sock.getsockopt(IPPROTO_TCP, TCP_INFO, 1)[0]
        except OSError:  # asyncio closed it: a write met the node's RST
            return True
        if state != TCP_ESTABLISHED:
            return True
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def healthy_socket(node: NodeProcess) -> AsyncIterator[Rtt]:
    """A connected client beside the flood that heartbeats twice per heartbeatSeconds."""
    async with socket(node, "healthy") as healthy:

        async def keepalive() -> None:
            while True:
                await asyncio.sleep(HEARTBEAT / 2)
                await healthy.send({"service": "rtt", "operation": "HEARTBEAT", "data": None})

        pinger = asyncio.create_task(keepalive())
        try:
            yield healthy
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger


async def served(healthy: Rtt, s2s: S2S, deadline: float = 2.0) -> float:
    """A reply and a push to the healthy client; return the seconds both took."""
    started = time.monotonic()
    async with asyncio.timeout(deadline):
        assert await healthy.ok("messaging", "GET_MESSAGE_BOXES", {}) is not None
        msg_id = await s2s.send(["healthy"], {"text": "still served"})
        [frame] = await healthy.pushed(1, timeout=deadline)
        assert frame["data"]["msgId"] == msg_id
    return time.monotonic() - started


async def online(s2s: S2S, profile: str) -> bool:
    data = await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": [profile]})
    return bool(data["online"][profile])


async def outcome(check: Awaitable[float]) -> float | BaseException:
    """What a check came to: its figure, or what went wrong (asserted after the RSS figures
    are reported, so a failing run still shows them)."""
    try:
        return await check
    except (AssertionError, ConnectionError, TimeoutError, ConnectionClosed) as e:
        return e


@dataclass
class Flood:
    rss: Rss
    sent: int = 0
    healthy: float | BaseException = 0.0  # seconds a reply and a push took, halfway through
    let_go: float | BaseException = 0.0  # how long the node took to drop the flooders
    ended: list[bool] = field(default_factory=list)  # each flooder's connection was closed

    def assert_bounded(self, what: str) -> None:
        """Report the figures (shown with `pytest -s`), then hold the flood to its bounds."""
        healthy = (
            f"served in {self.healthy:.3f} s"
            if isinstance(self.healthy, float)
            else f"not served: {self.healthy!r}"
        )
        line = (
            f"{what} [{test_server.ENGINE['engine']}]: {self.rss}; the flooders wrote "
            f"{self.sent / MB:.0f} MB; the healthy client was {healthy}"
        )
        print(line)
        assert self.rss.peak - self.rss.before < GROWTH_BOUND, line
        assert isinstance(self.healthy, float), line
        assert isinstance(self.let_go, float), f"the node kept the flooders: {self.let_go!r}"
        assert all(self.ended), f"{self.ended.count(False)} flooding sockets were never closed"


async def run_flood(
    node: NodeProcess,
    healthy: Rtt,
    s2s: S2S,
    raws: list[Raw],
    block: bytes,
    let_go: Callable[[], Awaitable[float]] | None = None,
) -> Flood:
    """Every raw socket writes `block` after `block` for FLOOD_SECONDS and reads nothing;
    halfway through the healthy client is checked; then `let_go` (if any) checks that the node
    drops the flooders by itself, still unread; last, each must be closed by the node within
    the silence period and the close timeout. The node's RSS is sampled throughout."""
    result = Flood(Rss(node.pid))
    try:
        async with result.rss.sampling():
            until = time.monotonic() + FLOOD_SECONDS

            async def halfway() -> float | BaseException:
                await asyncio.sleep(FLOOD_SECONDS / 2)
                return await outcome(served(healthy, s2s))

            *sent, result.healthy = await asyncio.gather(
                *(flood(raw, block, until) for raw in raws), halfway()
            )
            result.sent = sum(sent)
            if let_go is not None:
                result.let_go = await outcome(let_go())
            limit = 2 * HEARTBEAT + CLOSE_TIMEOUT + 2.0
            result.ended = list(await asyncio.gather(*(cut_off(raw, limit) for raw in raws)))
    finally:
        for raw in raws:
            raw.close()
    return result


async def test_ping_flood_from_unauthenticated_sockets_stays_bounded(tmp_path: Path):
    """Pins: pongs went straight to the transport with no bound and pings did not count as
    activity: 20 unauthenticated sockets that ping and never read took a node from 52 MB to
    973 MB in 6 s. Now a read full of pings gets one pong, every byte written is under the
    connection's budget (and a peer over its high-water mark is not read), each connection
    has 64 KiB of frames handled per turn of the loop, the sockets are closed at the CONNECT
    deadline, and the node's RSS stays within GROWTH_BOUND while a healthy client is served."""
    ping = masked_frame(b"p" * 125, PING)
    block = ping * (64 * 1024 // len(ping))
    async with node_process(tmp_path) as node:
        s2s = S2S(node)
        try:
            async with healthy_socket(node) as healthy:
                await served(healthy, s2s)  # warm: every path the check takes
                raws = [await open_raw(node.port, connect=False) for _ in range(SOCKETS)]
                result = await run_flood(node, healthy, s2s, raws, block)
                result.assert_bounded(f"ping flood, {SOCKETS} unauthenticated sockets")
                await served(healthy, s2s)
        finally:
            await s2s.close()


async def test_pipelining_flood_stays_bounded(tmp_path: Path):
    """Fails if clients that pipeline requests and never read their replies can grow the
    node's memory past GROWTH_BOUND, hold their sockets open, or delay a healthy client.
    (Before the fix each was cut off at 1 MiB of unread replies: this one passes there too.)"""
    async with node_process(tmp_path) as node:
        s2s = S2S(node)
        try:
            ids = [await s2s.send(["flood"], {"text": "x" * 20_000}) for _ in range(10)]
            request = {
                "service": "messaging",
                "operation": "GET_MESSAGES",
                "data": {"msgbox": "inbox", "msgIds": ids},
                "requestId": 1,
            }
            block = masked_frame(orjson.dumps(request)) * 64
            async with healthy_socket(node) as healthy:
                await served(healthy, s2s)
                raws = [await open_raw(node.port, "flood") for _ in range(SOCKETS)]
                result = await run_flood(node, healthy, s2s, raws, block)
                result.assert_bounded(f"pipelining flood, {SOCKETS} sockets")
        finally:
            await s2s.close()


async def test_requests_piling_up_behind_a_stalled_replay_stay_bounded(tmp_path: Path):
    """Pins: a replay to a client that does not read waited for drain forever, counted as
    activity, holding its whole batch (500 frames, whatever their size), while the backlog
    behind it was bounded only in count (64 messages of up to the frame cap each, plus what
    one read delivered): sockets that resumed with `since`, never read, and pipelined large
    requests held ~20 MB each, forever. Now a replay batch stops at RTT_SOCKET_BUFFER_BYTES,
    so does the backlog, and the stalled replay ends 4003."""
    sockets = 10
    connect = {
        "service": "rtt",
        "operation": "CONNECT",
        "data": {"since": 0, "auth": {"token": token("stalled")}},
    }
    pad = {"pad": "x" * 250_000}  # under the app's 256 KiB frame limit
    request = {"service": "rtt", "operation": "HEARTBEAT", "data": pad, "requestId": 1}
    block = masked_frame(orjson.dumps(request))
    async with node_process(tmp_path) as node:
        s2s = S2S(node)
        try:
            for _ in range(80):  # 8 MB of stream: more than the kernel buffers hold
                await s2s.send(["stalled"], {"text": "x" * 100_000})

            async def let_go() -> float:
                _, waited = await eventually(
                    lambda: online(s2s, "stalled"),
                    lambda on: on is False,
                    timeout=2 * HEARTBEAT + 2.0,
                    what="the stalled sockets closed",
                )
                return waited

            async with healthy_socket(node) as healthy:
                await served(healthy, s2s)
                raws = [
                    await open_raw(node.port, connect=False, rcvbuf=16 * 1024)
                    for _ in range(sockets)
                ]
                for raw in raws:
                    raw.send(TEXT, orjson.dumps(connect))
                result = await run_flood(node, healthy, s2s, raws, block, let_go)
                result.assert_bounded(f"requests behind {sockets} stalled replays")
        finally:
            await s2s.close()
