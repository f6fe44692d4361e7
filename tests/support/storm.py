"""Many resuming RTT clients, cheap enough for thousands of sockets in the test's own process.

A `Resumer` is one profile's client as an app would write it: it keeps the last seq it saw and
the store's epoch, and whenever its connection ends it reconnects with jittered exponential
backoff ("full jitter": a uniform delay up to `BASE * 2**attempt`, capped at `CAP`) and CONNECTs
with `since` and `epoch`, trying its nodes in turn. Each connection is a `loadtest.wsclient`
protocol (frames cut in `data_received`, no task per frame); the reconnect loop is one task per
profile. Everything the stream delivered is checked as it arrives: a seq that is not the next
one is recorded as a violation, never silently skipped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import orjson

from loadtest.wsclient import ProtocolError, WebSocketClient, close_all, connect
from tests.support.clients import token

BASE = 0.1  # first reconnect delay bound, seconds
CAP = 2.0  # largest reconnect delay bound, seconds
CONNECT_TIMEOUT = 10.0  # a client gives a handshake + CONNECT this long before it retries


def backoff(attempt: int) -> float:
    """Full jitter: uniform in [0, min(CAP, BASE * 2**attempt)], so a storm spreads out."""
    return random.uniform(0.0, min(CAP, BASE * 2**attempt))


class Connection(WebSocketClient):
    """One connection of a `Resumer`: CONNECT on open, then every frame goes to the resumer."""

    __slots__ = ("disconnect", "owner")

    def __init__(self, owner: Resumer, port: int) -> None:
        super().__init__("127.0.0.1", port, "/rtt")
        self.owner = owner
        self.disconnect: dict[str, Any] | None = None  # the rtt/DISCONNECT this connection got

    def on_open(self) -> None:
        owner = self.owner
        data: dict[str, Any] = {
            "appId": "demo",
            "profileId": owner.profile,
            "auth": {"token": owner.token},
            "since": owner.last_seq,
        }
        if owner.epoch is not None:
            data["epoch"] = owner.epoch
        self.send(orjson.dumps({"service": "rtt", "operation": "CONNECT", "data": data}))

    def on_message(self, payload: bytes, arrived_ns: int) -> None:
        frame = orjson.loads(payload)
        if "seq" in frame:
            self.owner.stream(frame)
        elif frame.get("service") == "rtt":
            self.owner.control(self, frame)
        else:
            self.owner.violations.append(f"unexpected frame {payload[:200]!r}")


class Resumer:
    """One profile's resuming client across its connections (see the module docstring)."""

    def __init__(self, profile: str, ports: Sequence[int]) -> None:
        self.profile = profile
        self.token = token(profile, ttl=3600)
        self.ports = list(ports)
        self.port_index = 0
        self.last_seq = 0
        self.epoch: str | None = None
        self.msg_ids: list[str] = []  # in seq order: msg_ids[i] has seq i + 1
        self.violations: list[str] = []
        self.resyncs: list[dict[str, Any]] = []
        self.disconnects: list[dict[str, Any]] = []
        self.close_codes: list[int | None] = []
        self.connects = 0
        self.failed_attempts = 0  # connections refused or failed before CONNECT answered
        self.lost_at: float | None = None  # monotonic time the last connection ended
        self.outages: list[float] = []  # seconds from a lost connection to the next CONNECT
        self.current: Connection | None = None
        self.stopping = False
        self.up = asyncio.Event()

    # -- what the stream delivers -------------------------------------------------------------

    def stream(self, frame: dict[str, Any]) -> None:
        seq = frame["seq"]
        if seq != self.last_seq + 1:
            kind = "duplicate" if seq <= self.last_seq else "gap"
            self.violations.append(f"{kind}: seq {seq} after {self.last_seq}")
            return
        self.last_seq = seq
        self.msg_ids.append(frame["data"]["msgId"])

    def control(self, connection: Connection, frame: dict[str, Any]) -> None:
        operation, data = frame.get("operation"), frame.get("data") or {}
        if operation == "CONNECT":
            if self.epoch is not None and data.get("epoch") != self.epoch:
                self.violations.append(f"epoch changed: {self.epoch} -> {data.get('epoch')}")
            self.epoch = data.get("epoch")
            if data.get("seq", 0) < self.last_seq:
                self.violations.append(f"CONNECT seq {data.get('seq')} < {self.last_seq}")
            self.connects += 1
            if self.lost_at is not None:
                self.outages.append(time.monotonic() - self.lost_at)
                self.lost_at = None
            if not connection.ready.done():
                connection.ready.set_result(None)
        elif operation == "RESYNC":
            self.resyncs.append(data)
        elif operation == "DISCONNECT":
            connection.disconnect = data
            self.disconnects.append(data)
        elif operation != "HEARTBEAT":
            self.violations.append(f"unexpected rtt frame {frame}")

    # -- the reconnect loop -------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until `stop()`: reconnect with jittered backoff after every loss."""
        attempt = 0
        while not self.stopping:
            connection = Connection(self, self.ports[self.port_index])
            try:
                await asyncio.wait_for(connect(connection), CONNECT_TIMEOUT)
            except (OSError, ConnectionError, ProtocolError, TimeoutError):
                self.failed_attempts += 1
                connection.abort()
                self.port_index = (self.port_index + 1) % len(self.ports)
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            self.current = connection
            self.up.set()
            await connection.lost
            self.up.clear()
            self.current = None
            self.close_codes.append(connection.close_code)
            if self.stopping:
                return
            self.lost_at = time.monotonic()
            if connection.disconnect and connection.disconnect.get("reasonCode") == 50302:
                self.port_index = (self.port_index + 1) % len(self.ports)  # that node is going
            await asyncio.sleep(backoff(attempt))


class Storm:
    """`count` resumers, their tasks, and the waits a test needs on all of them at once."""

    def __init__(self, profiles: Sequence[str], ports: Sequence[int]) -> None:
        self.resumers = [Resumer(p, ports) for p in profiles]
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.tasks = [asyncio.create_task(r.run()) for r in self.resumers]

    async def all_up(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            for r in self.resumers:
                await r.up.wait()

    async def all_received(self, expected: dict[str, set[str]], timeout: float) -> None:
        """Wait until every profile's stream holds every msgId in `expected[profile]`; fail at
        once if a stream broke (a gap is not waited out: the client would never fill it)."""
        deadline = time.monotonic() + timeout
        for r in self.resumers:
            want = expected.get(r.profile, set())
            while not want <= set(r.msg_ids):
                assert not r.violations, (r.profile, r.violations[:5])
                if time.monotonic() > deadline:
                    missing = want - set(r.msg_ids)
                    raise AssertionError(f"{r.profile} still misses {len(missing)} messages")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for r in self.resumers:
            r.stopping = True
        await close_all([r.current for r in self.resumers if r.current is not None], 5.0)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
