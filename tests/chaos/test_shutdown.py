"""Graceful shutdown of a real `rtt serve` node process: SIGTERM while sends are in flight."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
import websockets

from loadtest.node import NodeProcess
from tests.support.clients import Rtt, open_socket, sys_send_body
from tests.support.nodes import engine_env
from tests.support.server import APPS_TOML

PROFILES = [f"p{i}" for i in range(20)]
SHUTDOWN_SECONDS = 5.0


@pytest.fixture(params=["local", "redis"])
async def env(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, str]]:
    yield engine_env(request, request.param) | {"RTT_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS)}


async def _send_until_refused(url: str, acked: list[str], started: asyncio.Event) -> int:
    """Send back to back (two at a time) until the node refuses; keep every acknowledged msgId.
    Returns how many sends got no acknowledgement."""
    refused = 0
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as http:

        async def one(n: int) -> bool:
            nonlocal refused
            try:
                r = await http.post("/s2sdispatcher", json=sys_send_body(PROFILES, {"n": n}))
            except httpx.HTTPError:
                refused += 1
                return False
            if r.status_code == 200 and r.json()["status"] == 200:
                acked.append(r.json()["data"]["msgId"])
                return True
            refused += 1
            return False

        n = 0
        while True:
            results = await asyncio.gather(one(n), one(n + 1))
            n += 2
            if len(acked) >= 10:
                started.set()
            if not all(results):
                return refused


async def _until_closed(rtt: Rtt) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            frames.append(await rtt.recv(timeout=10.0))
    return frames


async def test_sigterm_says_reconnect_and_loses_no_acknowledged_send(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Pins: on SIGTERM sockets were closed with a bare 1012 (no DISCONNECT saying why), and
    uvicorn waited for connections with no deadline. Now every socket gets `rtt/DISCONNECT`
    {"reason": "server restarting; reconnect", "reasonCode": 50302} then close 1012, the node
    stops accepting and exits within RTT_SHUTDOWN_SECONDS, and a send racing the SIGTERM is
    either refused or acknowledged, in which case it is replayed after the restart."""
    node = NodeProcess(APPS_TOML, directory=tmp_path, env=env)
    await asyncio.to_thread(node.start, 20.0)
    try:
        sockets = [await open_socket(node, p) for p in PROFILES]  # type: ignore[arg-type]
        acked: list[str] = []
        started = asyncio.Event()
        sender = asyncio.create_task(_send_until_refused(node.url, acked, started))
        await asyncio.wait_for(started.wait(), 10.0)
        assert node.proc is not None
        node.proc.terminate()
        stopped_at = time.monotonic()
        seen = await asyncio.gather(*(_until_closed(s) for s in sockets))
        refused = await asyncio.wait_for(sender, 15.0)
        await asyncio.to_thread(node.proc.wait, SHUTDOWN_SECONDS + 5.0)
        assert time.monotonic() - stopped_at < SHUTDOWN_SECONDS + 5.0
        assert refused >= 1
        with pytest.raises(OSError):  # the listener is gone
            await open_socket(node, "late")  # type: ignore[arg-type]
        for rtt, frames in zip(sockets, seen, strict=True):
            assert rtt.ws.close_code == 1012, rtt.ws.close_code
            last = frames[-1]
            assert last["operation"] == "DISCONNECT", frames[-3:]
            assert last["data"] == {
                "reason": "server restarting; reconnect",
                "reasonCode": 50302,
            }
            assert all(f["operation"] == "INCOMING" for f in frames[:-1])

        restarted = NodeProcess(APPS_TOML, directory=tmp_path, env=env, port=node.port)
        await asyncio.to_thread(restarted.start, 20.0)
        try:
            for profile, frames in zip(PROFILES, seen, strict=True):
                live = [f["seq"] for f in frames[:-1]]
                assert live == list(range(1, len(live) + 1))
                rtt = await open_socket(restarted, profile, since=0)  # type: ignore[arg-type]
                try:
                    latest = rtt.connect["seq"]
                    replayed = await rtt.pushed(latest)
                finally:
                    await rtt.close()
                assert [f["seq"] for f in replayed] == list(range(1, latest + 1))
                msg_ids = [f["data"]["msgId"] for f in replayed]
                assert len(set(msg_ids)) == len(msg_ids)
                assert set(acked) <= set(msg_ids), "an acknowledged send was lost"
        finally:
            assert await asyncio.to_thread(restarted.stop, 10.0), restarted.log_text()
    finally:
        node.stop(1.0)


async def test_sigterm_drops_the_nodes_presence_in_one_step_not_one_per_socket(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Pins: on SIGTERM every closing socket ran its own presence leave (a script call each):
    2 000 sockets on redis spent 1-5 s of the shutdown on them. Now the node's presence goes in
    one step when the shutdown starts, and other nodes stop seeing its profiles at once."""
    env = engine_env(request, "redis") | {"RTT_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS)}
    node = NodeProcess(APPS_TOML, directory=tmp_path, env=env)
    await asyncio.to_thread(node.start, 20.0)
    admin = redis.asyncio.Redis.from_url(env["RTT_REDIS_URL"])
    try:
        profiles = [f"crowd-{i}" for i in range(60)]
        sockets = [await open_socket(node, p) for p in profiles]  # type: ignore[arg-type]
        calls_before = (await admin.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
        assert node.proc is not None
        node.proc.terminate()
        await asyncio.gather(*(_until_closed(s) for s in sockets))
        await asyncio.to_thread(node.proc.wait, SHUTDOWN_SECONDS + 5.0)
        calls_after = (await admin.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
        assert calls_after - calls_before < len(profiles) // 2, (calls_before, calls_after)
        assert not [k async for k in admin.scan_iter("*node*")], "presence left behind"
    finally:
        await admin.aclose()
        node.stop(1.0)
