"""`rtt serve --workers 2`: two real node processes on one port (SO_REUSEPORT) under a supervisor,
on the tests' Redis. Which worker holds a connection is read from `/status` ("node" is
host:pid) asked over that same connection; the kernel picks the worker for each new one."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from loadtest.node import NodeProcess
from rtt.client import Client, Pushed
from tests.support.clients import Rtt, open_socket, sys_send_body, token
from tests.support.server import APPS_TOML

PROFILES = [f"w{i}" for i in range(40)]
SHUTDOWN_SECONDS = 3.0
STOP_MARGIN = 6.0  # the supervisor's own margin (5 s) and process exit
LOOKS = 200  # fresh connections tried to find both workers (each is one in two)

pytestmark = pytest.mark.timeout(90)


def _node(directory: Path, redis_url: str, **env: str) -> NodeProcess:
    return NodeProcess(
        APPS_TOML,
        directory=directory,
        workers=2,
        env={
            "RTT_ENGINE": "redis",
            "RTT_REDIS_URL": redis_url,
            "RTT_PROBE_INTERVAL_SECONDS": "0.3",
            "RTT_PRESENCE_TTL_SECONDS": "1.0",
            "RTT_SHUTDOWN_SECONDS": str(SHUTDOWN_SECONDS),
            **env,
        },
    )


@contextlib.asynccontextmanager
async def _running(node: NodeProcess) -> AsyncIterator[NodeProcess]:
    """Started (both workers listening), and at the end stopped: the supervisor must exit by
    itself on SIGTERM, taking its workers with it."""
    await asyncio.to_thread(node.start, 20.0)  # both workers answered
    pids = node.worker_pids()
    try:
        yield node
    finally:
        graceful = await asyncio.to_thread(node.stop, SHUTDOWN_SECONDS + STOP_MARGIN)
        assert graceful, node.log_text()
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


async def _until(done: Any, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        await asyncio.sleep(0.05)


def _pid(node_name: str) -> int:
    return int(node_name.rsplit(":", 1)[1])


async def _status(url: str) -> dict[str, Any]:
    """`/status` of whichever worker the kernel gives a new connection."""
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        body: dict[str, Any] = (await http.get("/status")).json()
        return body


async def _sockets_per_worker(node: NodeProcess) -> dict[int, int]:
    """pid → sockets it holds, for every worker that answered one of up to LOOKS connections."""
    seen: dict[int, int] = {}
    for _ in range(LOOKS):
        status = await _status(node.url)
        seen[_pid(status["node"])] = status["connections"]["sockets"]
        if seen.keys() >= node.worker_pids():
            break
    return seen


async def _send_via(url: str, n: int) -> int:
    """One S2S send to every profile, over a new connection; the pid of the worker that took it."""
    body = sys_send_body(PROFILES, {"n": n})
    async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
        r = await http.post("/s2sdispatcher", json=body)
        assert r.status_code == 200 and r.json()["status"] == 200, r.text
        return _pid((await http.get("/status")).json()["node"])  # same keep-alive connection


async def _open_all(node: NodeProcess) -> list[Rtt]:
    return [await open_socket(node, p) for p in PROFILES]  # type: ignore[arg-type]


async def test_both_workers_hold_sockets_and_a_send_through_either_reaches_all(
    tmp_path: Path, clean_redis: str
) -> None:
    async with _running(_node(tmp_path, clean_redis)) as node:
        sockets = await _open_all(node)
        held = await _sockets_per_worker(node)
        assert held.keys() == node.worker_pids(), held
        assert all(count > 0 for count in held.values()), held
        assert sum(held.values()) == len(PROFILES)

        via: list[int] = []
        while set(via) != node.worker_pids():
            assert len(via) < 30, f"every send went through the same worker: {via}"
            via.append(await _send_via(node.url, len(via)))
        for rtt in sockets:
            frames = await rtt.pushed(len(via), timeout=10.0)
            assert [f["seq"] for f in frames] == list(range(1, len(via) + 1))
            assert [f["data"]["message"]["content"]["n"] for f in frames] == list(range(len(via)))
        for rtt in sockets:
            await rtt.close()


async def _read(client: Client, seqs: list[int]) -> None:
    async for frame in client:
        if isinstance(frame, Pushed):
            seqs.append(frame.seq)


async def test_a_killed_worker_is_restarted_and_its_clients_resume_elsewhere(
    tmp_path: Path, clean_redis: str
) -> None:
    async with _running(_node(tmp_path, clean_redis)) as node:
        clients = [Client(node.ws, token(p), backoff_base=0.1, backoff_cap=1.0) for p in PROFILES]
        seqs: list[list[int]] = [[] for _ in clients]
        readers = []
        try:
            for client in clients:
                await client.connected(10.0)
            readers = [asyncio.create_task(_read(c, s)) for c, s in zip(clients, seqs, strict=True)]
            for n in range(3):
                await _send_via(node.url, n)
            victim = min(node.worker_pids())
            os.kill(victim, signal.SIGKILL)
            await _until(
                lambda: len(node.worker_pids()) == 2 and victim not in node.worker_pids(),
                "restarted worker",
            )
            for n in range(3, 6):
                await _send_via(node.url, n)
            await _until(lambda: all(len(s) >= 6 for s in seqs), "six frames on every client")
            assert all(s == [1, 2, 3, 4, 5, 6] for s in seqs), seqs
            reconnected = sum(c.stats.connects > 1 for c in clients)
            assert reconnected > 0, "no client was on the killed worker"
            held = await _sockets_per_worker(node)
            assert held.keys() == node.worker_pids(), held  # the new worker serves too
            assert "was killed by SIGKILL; restarted it" in node.log_text()
        finally:
            for task in readers:
                task.cancel()
            for client in clients:
                await client.close()


async def _until_closed(rtt: Rtt) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = []
    with contextlib.suppress(websockets.ConnectionClosed):
        while True:
            frames.append(await rtt.recv(timeout=SHUTDOWN_SECONDS + STOP_MARGIN))
    return frames


async def test_sigterm_to_the_supervisor_tells_every_socket_and_stops_every_worker(
    tmp_path: Path, clean_redis: str
) -> None:
    node = _node(tmp_path, clean_redis)
    await asyncio.to_thread(node.start, 20.0)
    try:
        pids = node.worker_pids()
        sockets = await _open_all(node)
        held = await _sockets_per_worker(node)
        assert held.keys() == pids and all(held.values()), held
        assert node.proc is not None
        node.proc.terminate()
        stopped_at = time.monotonic()
        seen = await asyncio.gather(*(_until_closed(s) for s in sockets))
        code = await asyncio.to_thread(node.proc.wait, SHUTDOWN_SECONDS + STOP_MARGIN)
        assert time.monotonic() - stopped_at < SHUTDOWN_SECONDS + STOP_MARGIN
        assert code == 0, node.log_text()
        for rtt, frames in zip(sockets, seen, strict=True):
            assert rtt.ws.close_code == 1012, rtt.ws.close_code
            assert frames[-1]["operation"] == "DISCONNECT", frames
            assert frames[-1]["data"]["reasonCode"] == 50302
        for pid in pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        node.stop(1.0)


async def test_a_worker_dying_too_often_makes_the_supervisor_give_up(
    tmp_path: Path, clean_redis: str
) -> None:
    node = _node(tmp_path, clean_redis, RTT_WORKER_RESTARTS_MAX="1")
    await asyncio.to_thread(node.start, 20.0)
    try:
        first = min(node.worker_pids())
        os.kill(first, signal.SIGKILL)
        await _until(lambda: len(node.worker_pids() - {first}) == 2, "restarted worker")
        survivors = node.worker_pids()
        os.kill(min(survivors), signal.SIGKILL)  # the second death within the window
        assert node.proc is not None
        code = await asyncio.to_thread(node.proc.wait, SHUTDOWN_SECONDS + STOP_MARGIN)
        assert code == 1
        assert "more than RTT_WORKER_RESTARTS_MAX=1; giving up" in node.log_text()
        for pid in survivors:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        node.stop(1.0)


def test_the_local_engine_refuses_more_than_one_worker(tmp_path: Path) -> None:
    config = tmp_path / "apps.toml"
    config.write_text(APPS_TOML)
    done = subprocess.run(
        [sys.executable, "-m", "rtt", "serve", "--config", str(config), "--workers", "2"],
        env={**os.environ, "RTT_ENGINE": "local", "RTT_DATABASE": str(tmp_path / "rtt.db")},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "RTT_WORKERS" in done.stderr and "one writer" in done.stderr, done.stderr
    assert not (tmp_path / "rtt.db").exists()


def _gone(pid: int) -> bool:
    """Ended: no such process, or a zombie left for whoever adopted it to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_workers_end_when_the_supervisor_is_killed(tmp_path: Path, clean_redis: str) -> None:
    node = _node(tmp_path, clean_redis)
    await asyncio.to_thread(node.start, 20.0)
    try:
        pids = node.worker_pids()
        assert len(pids) == 2
        node.kill()  # SIGKILL: the supervisor forwards nothing
        await _until(lambda: all(_gone(pid) for pid in pids), "workers ending")
        with pytest.raises(OSError):  # nobody listens on the port any more
            await open_socket(node, "late")  # type: ignore[arg-type]
    finally:
        node.stop(1.0)
