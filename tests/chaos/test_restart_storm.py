"""A restart storm: a real node holding SOCKETS sockets goes away; every client comes back.

Each profile's client (the SDK's rtt.client, run by tests/support/storm.py) reconnects with
jittered exponential backoff and CONNECTs with `since` = the last seq it saw and the store's
`epoch`. S2S sends go to the profiles before the restart, racing the SIGTERM (a refused send
does not count; an acknowledged one must arrive) and while the clients stream back. At the end
every profile's stream must be 1..latest with no gap and no duplicate, hold every acknowledged
message exactly once, and carry no RESYNC: a clean restart changes no epoch and drops nothing a
cursor points at.

Figures (sockets, reconnect times, total) are printed: run with `-s -n 0` to see them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from loadtest.node import NodeProcess
from tests.support.clients import sys_send_body
from tests.support.nodes import engine_env
from tests.support.server import APPS_TOML
from tests.support.storm import Storm

SOCKETS = 2000
GROUPS = 4  # each send goes to one quarter of the profiles, so seqs differ between groups
SHUTDOWN_SECONDS = 5.0
UP_SECONDS = 30.0  # every client must be back (and caught up) within this of the restart

# Alone each test takes 3-11 s; the three at once on 2 cores (pytest -n 4) up to 27 s, so the
# default 60 s would leave too little room when the rest of the suite runs beside them.
pytestmark = pytest.mark.timeout(120)


class Sender:
    """S2S sends to one group of profiles at a time; remembers what each profile must get."""

    def __init__(self, profiles: Sequence[str]) -> None:
        self.groups = [list(profiles[g::GROUPS]) for g in range(GROUPS)]
        self.acked: dict[str, set[str]] = {p: set() for p in profiles}
        self.refused = 0
        self._next = itertools.count()

    async def send(self, http: httpx.AsyncClient) -> bool:
        """One send to the next group; True if acknowledged (then its recipients must get it)."""
        n = next(self._next)
        group = self.groups[n % GROUPS]
        body = sys_send_body(group, {"n": n})
        try:
            r = await http.post("/s2sdispatcher", json=body)
        except httpx.HTTPError:
            self.refused += 1
            return False
        if r.status_code != 200 or r.json().get("status") != 200:
            self.refused += 1
            return False
        msg_id = r.json()["data"]["msgId"]
        for profile in group:
            self.acked[profile].add(msg_id)
        return True

    async def rounds(self, url: str, count: int) -> None:
        """`count` sends to every group, two at a time; every one must be acknowledged."""
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
            for _ in range(count * GROUPS // 2):
                assert all(await asyncio.gather(self.send(http), self.send(http)))

    async def until_refused(self, url: str, started: asyncio.Event) -> None:
        """Two at a time until the node refuses one (it is shutting down)."""
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
            sent = 0
            while True:
                results = await asyncio.gather(self.send(http), self.send(http))
                sent += 2
                if sent >= GROUPS:
                    started.set()
                if not all(results):
                    return

    async def meanwhile(self, url: str, stop: asyncio.Event) -> None:
        """Sends to a node that stays up, back to back, until `stop` (none may be refused)."""
        async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:
            while not stop.is_set():
                assert await self.send(http)
                await asyncio.sleep(0.02)


def _percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def _sigterm(node: NodeProcess, sender: Sender) -> float:
    """SIGTERM `node` while sends race it; wait until it exits. Returns when it was signalled."""
    started = asyncio.Event()
    racing = asyncio.create_task(sender.until_refused(node.url, started))
    await asyncio.wait_for(started.wait(), 10.0)
    assert node.proc is not None
    node.proc.terminate()
    stopped_at = time.monotonic()
    await asyncio.wait_for(racing, 15.0)
    await asyncio.to_thread(node.proc.wait, SHUTDOWN_SECONDS + 5.0)
    print(f"\nnode exited {time.monotonic() - stopped_at:.2f} s after SIGTERM", end="")
    return stopped_at


def _check(storm: Storm, sender: Sender, stopped_at: float, began: float, label: str) -> None:
    """Every stream whole and exact; print the figures."""
    outages: list[float] = []
    for r in storm.resumers:
        assert not r.violations, (r.profile, r.violations[:5])
        assert not r.resyncs, (r.profile, r.resyncs)
        assert r.connects == 2, (r.profile, r.connects, r.close_codes)
        assert r.close_codes[0] == 1012, (r.profile, r.close_codes)
        assert r.disconnects[0] == {"reason": "server restarting; reconnect", "reasonCode": 50302}
        assert len(set(r.msg_ids)) == len(r.msg_ids), f"{r.profile}: a message came twice"
        assert sender.acked[r.profile] <= set(r.msg_ids), f"{r.profile}: acknowledged send lost"
        outages.extend(r.outages)
    assert len(outages) == len(storm.resumers)
    acked = len(set().union(*sender.acked.values()))
    delivered = sum(len(r.msg_ids) for r in storm.resumers)
    failed = sum(r.failed_attempts for r in storm.resumers)
    print(
        f"\n{label}: {len(storm.resumers)} sockets, {acked} acknowledged sends"
        f" ({sender.refused} refused), {delivered} frames delivered, {failed} failed connect"
        f" attempts;"
        f" reconnect after the loss p50 {_percentile(outages, 0.5):.2f} s,"
        f" p99 {_percentile(outages, 0.99):.2f} s, max {max(outages):.2f} s;"
        f" all caught up {time.monotonic() - stopped_at:.2f} s after SIGTERM;"
        f" test {time.monotonic() - began:.1f} s"
    )


@pytest.mark.parametrize("engine", ["local", "redis"])
async def test_restart_storm_every_client_resumes_exactly(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    """Pins: a node restart with SOCKETS connected clients resuming at once must lose, repeat
    or reorder no acknowledged send and leave no client out: each gets DISCONNECT 50302 +
    close 1012, reconnects once (jittered backoff) with `since`/`epoch` to the node restarted on
    the same store (local: the same database file; redis: the same Redis) and receives every
    acknowledged message exactly once, in seq order, with no RESYNC."""
    began = time.monotonic()
    env = engine_env(request, engine) | {"RTT_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS)}
    profiles = [f"s{i}" for i in range(SOCKETS)]
    sender = Sender(profiles)
    node = NodeProcess(APPS_TOML, directory=tmp_path, env=env)
    await asyncio.to_thread(node.start, 20.0)
    storm = Storm(profiles, [node.port])
    restarted: NodeProcess | None = None
    try:
        storm.start()
        await storm.all_up(UP_SECONDS)
        await sender.rounds(node.url, 2)
        stopped_at = await _sigterm(node, sender)
        restarted = NodeProcess(APPS_TOML, directory=tmp_path, env=env, port=node.port)
        await asyncio.to_thread(restarted.start, 20.0)
        print(f", ready again after {time.monotonic() - stopped_at:.2f} s", end="")
        await sender.rounds(restarted.url, 3)  # racing the clients as they stream back
        await storm.all_up(UP_SECONDS)
        await storm.all_received(sender.acked, UP_SECONDS)
        _check(storm, sender, stopped_at, began, f"restart storm ({engine})")
    finally:
        await storm.stop()
        node.stop(1.0)
        if restarted is not None:
            assert await asyncio.to_thread(restarted.stop, 10.0), restarted.log_text()


async def test_failover_storm_clients_of_a_stopped_node_resume_on_the_other(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Pins: with two redis nodes, SOCKETS clients of a node that stops must all resume on the
    other node from the shared store, while sends through that other node continue the whole
    time: every acknowledged message exactly once, in seq order, no RESYNC."""
    began = time.monotonic()
    env = engine_env(request, "redis") | {"RTT_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS)}
    profiles = [f"f{i}" for i in range(SOCKETS)]
    sender = Sender(profiles)
    a = NodeProcess(APPS_TOML, directory=tmp_path, env=env)
    b = NodeProcess(APPS_TOML, directory=tmp_path, env=env)
    for n in (a, b):
        n.launch()
    await asyncio.gather(*(asyncio.to_thread(n.wait_ready, 20.0) for n in (a, b)))
    storm = Storm(profiles, [a.port, b.port])  # every client starts on a, fails over to b
    try:
        storm.start()
        await storm.all_up(UP_SECONDS)
        await sender.rounds(a.url, 1)
        await sender.rounds(b.url, 1)
        stop = asyncio.Event()
        through_b = asyncio.create_task(sender.meanwhile(b.url, stop))
        stopped_at = await _sigterm(a, sender)
        await storm.all_up(UP_SECONDS)
        stop.set()
        await through_b
        await sender.rounds(b.url, 1)
        await storm.all_received(sender.acked, UP_SECONDS)
        assert all(r.port == b.port for r in storm.resumers)
        _check(storm, sender, stopped_at, began, "failover storm (redis, 2 nodes)")
    finally:
        await storm.stop()
        a.stop(1.0)
        assert await asyncio.to_thread(b.stop, 10.0), b.log_text()
