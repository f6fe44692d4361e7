"""Many resuming RTT clients: thousands of `rtt.client.Client`s in the test's own process.

A `Resumer` is one profile's app: it runs the SDK's `Client`, which keeps the last seq it saw and
the store's epoch, and whenever its connection ends reconnects with jittered exponential backoff
("full jitter": a uniform delay up to `BASE * 2**attempt`, capped at `CAP`) and CONNECTs with
`since` and `epoch`, trying its nodes in turn. The Resumer checks everything the stream
delivered as it arrives: a seq that is not the next one, a duplicate or gap the client had to
drop or heal, an epoch change, an unexpected frame, each is recorded as a violation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from rtt.client import Client, Connected, Disconnected, Pushed, Resync
from tests.support.clients import token

BASE = 0.1  # first reconnect delay bound, seconds
CAP = 2.0  # largest reconnect delay bound, seconds
CONNECT_TIMEOUT = 10.0  # a client gives a handshake + CONNECT this long before it retries


class Resumer:
    """One profile's resuming client across its connections (see the module docstring)."""

    def __init__(self, profile: str, ports: Sequence[int]) -> None:
        self.profile = profile
        self.client = Client(
            [f"ws://127.0.0.1:{port}/rtt" for port in ports],
            token(profile, ttl=3600),
            since=0,
            backoff_base=BASE,
            backoff_cap=CAP,
            connect_timeout=CONNECT_TIMEOUT,
        )
        self.last_seq = 0
        self.epoch: str | None = None
        self.msg_ids: list[str] = []  # in seq order: msg_ids[i] has seq i + 1
        self.problems: list[str] = []
        self.resyncs: list[int] = []
        self.disconnects: list[dict[str, Any] | None] = []
        self.close_codes: list[int | None] = []
        self.connects = 0
        self.lost_at: float | None = None  # monotonic time the last connection ended
        self.outages: list[float] = []  # seconds from a lost connection to the next CONNECT
        self.stopping = False
        self.up = asyncio.Event()

    @property
    def violations(self) -> list[str]:
        """What broke the stream: seen here, or dropped or healed by the client on the way."""
        stats = self.client.stats
        dropped = [f"client dropped {stats.duplicates} duplicates"] if stats.duplicates else []
        healed = [f"client healed {stats.gaps} gaps"] if stats.gaps else []
        return self.problems + dropped + healed

    @property
    def failed_attempts(self) -> int:
        """Connections refused or failed before CONNECT answered."""
        return self.client.stats.failed_attempts

    @property
    def port(self) -> int | None:
        """The port of the node the client is connected to now, if any."""
        return urlsplit(self.client.url).port if self.client.url else None

    async def run(self) -> None:
        """Read the client's frames until it is closed, checking each."""
        async for frame in self.client:
            if isinstance(frame, Pushed):
                if frame.seq != self.last_seq + 1:
                    self.problems.append(f"seq {frame.seq} after {self.last_seq}")
                self.last_seq = frame.seq
                self.msg_ids.append(frame.data["msgId"])
            elif isinstance(frame, Connected):
                if self.epoch is not None and frame.epoch != self.epoch:
                    self.problems.append(f"epoch changed: {self.epoch} -> {frame.epoch}")
                self.epoch = frame.epoch
                if frame.seq < self.last_seq:
                    self.problems.append(f"CONNECT seq {frame.seq} < {self.last_seq}")
                self.connects += 1
                if self.lost_at is not None:
                    self.outages.append(time.monotonic() - self.lost_at)
                    self.lost_at = None
                self.up.set()
            elif isinstance(frame, Disconnected):
                self.up.clear()
                if self.stopping:
                    continue
                self.close_codes.append(frame.code)
                self.disconnects.append(frame.disconnect)
                self.lost_at = time.monotonic()
            elif isinstance(frame, Resync):
                self.resyncs.append(frame.seq)
            else:
                self.problems.append(f"unexpected frame {frame}")


class Storm:
    """`count` resumers, their tasks, and the waits a test needs on all of them at once."""

    def __init__(self, profiles: Sequence[str], ports: Sequence[int]) -> None:
        self.resumers = [Resumer(p, ports) for p in profiles]
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for r in self.resumers:
            r.client.start()
        self.tasks = [asyncio.create_task(r.run()) for r in self.resumers]

    async def all_up(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            for r in self.resumers:
                await r.up.wait()

    async def all_received(self, expected: dict[str, set[str]], timeout: float) -> None:
        """Wait until every profile's stream holds every msgId in `expected[profile]`; fail at
        once if a stream broke (a duplicate or a gap, even one the client dropped or healed)."""
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
        await asyncio.gather(*(r.client.close() for r in self.resumers))
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
