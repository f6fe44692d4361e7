"""S2S send latency while hostile readers ask for big pages and never read them.

    python -m loadtest.hostile_readers --readers 300 --messages 100 [--engine redis]

Starts its own node (and for `--engine redis` a throwaway redis-server), fills one profile's
inbox with `--messages` messages of ~128 KB, then measures S2S send latency twice in the same
run: idle, and while `--readers` sockets of that profile each ask at once for a 100-row page
of it and never read a byte. Reports p50/p99 of both and their ratio, how long the readers took
to be served (a reader counts as served once its reply reaches its socket, seen with FIONREAD,
still without reading), /readyz answers and failed sends meanwhile, and the node's RSS before,
at its peak and after, as JSON. Loopback only, bounded in sockets, sends and time.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import fcntl
import os
import socket
import statistics
import struct
import sys
import termios
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import httpx
import jwt
import orjson

from loadtest.node import APP, SECRET, SERVER_SECRET, NodeProcess, running
from loadtest.wsclient import TEXT, check_handshake, client_frame

HOSTILE = "hostile-reader"  # the profile whose inbox the readers page through
BYSTANDER = "bystander"  # the profile the measured sends go to
CONTENT = {"text": "x" * 130_000}  # ~128 KB serialized, under the default 131072 limit
SERVED_BYTES = 1024  # more unread bytes than a CONNECT reply: the page reply has started
MAX_READERS = 2000
MAX_MESSAGES = 1000
MAX_SENDS = 10_000
SAMPLE_SECONDS = 0.05


@dataclass(frozen=True)
class Target:
    """A running node and the app credentials to drive it with."""

    http: str
    host: str
    port: int
    pid: int
    app: str = APP
    secret: str = SECRET
    server: str = "backend"
    server_secret: str = SERVER_SECRET


def rss_mb(pid: int) -> float:
    """The resident set size of process `pid`, in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _unread(writer: asyncio.StreamWriter) -> int:
    """Bytes waiting in the socket's receive buffer, asked of the kernel, not read."""
    fd = writer.get_extra_info("socket").fileno()
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def _frame(body: dict[str, Any]) -> bytes:
    return client_frame(TEXT, orjson.dumps(body))


def page_request(rows: int = 100) -> bytes:
    """A GET_MESSAGES_PAGE of `rows` rows, as a masked frame."""
    context = {"pagination": {"rowsPerPage": rows, "pageNumber": 1}}
    return _frame(
        {
            "service": "messaging",
            "operation": "GET_MESSAGES_PAGE",
            "data": {"context": context},
            "requestId": 1,
        }
    )


async def open_reader(target: Target, profile: str, rcvbuf: int = 4096) -> asyncio.StreamWriter:
    """A socket of `profile` past its handshake and CONNECT, that reads nothing from then on
    (its receive buffer kept small, so what the node sends stays in the node)."""
    token = jwt.encode(
        {"sub": profile, "app": target.app, "exp": int(time.time()) + 600}, target.secret
    )
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (target.host, target.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        f"GET /rtt?token={token} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    check_handshake(head[:-4], key)
    cast(asyncio.Transport, writer.transport).pause_reading()  # from here on nothing is read
    writer.write(_frame({"service": "rtt", "operation": "CONNECT", "data": {}}))
    await writer.drain()
    return writer


class Sender:
    """System messages over S2S, one at a time, each timed from request to response."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.target = target
        self.http = httpx.AsyncClient(base_url=target.http, timeout=timeout)

    async def send(self, to: str, content: dict[str, Any]) -> tuple[int, float]:
        """(HTTP status, milliseconds) of one SYS_SEND_MESSAGE."""
        body = {
            "appId": self.target.app,
            "serverName": self.target.server,
            "serverSecret": self.target.server_secret,
            "service": "messaging",
            "operation": "SYS_SEND_MESSAGE",
            "data": {
                "toProfileIds": [to],
                "contentJson": content,
                "fromJson": {"id": None, "name": "bench"},
            },
        }
        started = time.perf_counter()
        response = await self.http.post("/s2sdispatcher", content=orjson.dumps(body))
        return response.status_code, (time.perf_counter() - started) * 1000

    async def ready(self) -> int:
        return (await self.http.get("/readyz")).status_code

    async def close(self) -> None:
        await self.http.aclose()


class Watch:
    """Samples the node's RSS and /readyz every SAMPLE_SECONDS while it runs."""

    def __init__(self, target: Target, sender: Sender) -> None:
        self.peak_mb = rss_mb(target.pid)
        self.not_ready = 0
        self.probes = 0
        self._target, self._sender = target, sender
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, rss_mb(self._target.pid))
            self.probes += 1
            self.not_ready += await self._sender.ready() != 200
            await asyncio.sleep(SAMPLE_SECONDS)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "sends": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def measure(
    target: Target, *, readers: int, messages: int, sends: int, timeout: float, rows: int = 100
) -> dict[str, Any]:
    """Seed, measure idle, attack, measure under attack; the figures as a dict."""
    sender = Sender(target, timeout)
    writers: list[asyncio.StreamWriter] = []
    try:
        for _ in range(messages):
            status, _ = await sender.send(HOSTILE, CONTENT)
            assert status == 200, f"seeding failed with HTTP {status}"
        idle = [(await sender.send(BYSTANDER, {"i": i}))[1] for i in range(sends)]
        opening = (open_reader(target, HOSTILE) for _ in range(readers))
        writers = list(await asyncio.gather(*opening))
        await asyncio.sleep(0.2)  # let the CONNECT replies land
        rss_before = rss_mb(target.pid)
        watch = Watch(target, sender)
        request = page_request(rows)
        for writer in writers:
            writer.write(request)
        started = time.perf_counter()
        loaded: list[float] = []
        failed = 0
        served_s: float | None = None
        deadline = started + timeout
        while time.perf_counter() < deadline and (len(loaded) < sends or served_s is None):
            status, ms = await sender.send(BYSTANDER, {"i": len(loaded)})
            failed += status != 200
            loaded.append(ms)
            if served_s is None and all(_unread(w) > SERVED_BYTES for w in writers):
                served_s = time.perf_counter() - started
        await watch.stop()
        served = sum(_unread(w) > SERVED_BYTES for w in writers)
        rss_loaded = rss_mb(target.pid)
    finally:
        for writer in writers:
            writer.transport.abort()
        await sender.close()
    await asyncio.sleep(0.5)
    idle_s, loaded_s = summary(idle), summary(loaded)
    return {
        "readers": readers,
        "readers_served": served,
        "readers_served_in_s": None if served_s is None else round(served_s, 3),
        "messages_in_inbox": messages,
        "rows_per_page": rows,
        "idle": idle_s,
        "under_attack": loaded_s,
        "ratio": {
            "p50": round(loaded_s["p50_ms"] / idle_s["p50_ms"], 2),
            "p99": round(loaded_s["p99_ms"] / idle_s["p99_ms"], 2),
        },
        "failed_sends": failed,
        "readyz_not_200": watch.not_ready,
        "readyz_probes": watch.probes,
        "rss_mb": {
            "before": rss_before,
            "peak": watch.peak_mb,
            "while_readers_open": rss_loaded,
            "after_readers_closed": rss_mb(target.pid),
        },
    }


@contextlib.contextmanager
def node(engine: str) -> Iterator[NodeProcess]:
    """A fresh node of the bench app on `engine` (with its own redis-server for redis)."""
    with contextlib.ExitStack() as stack:
        env = {"RTT_ENGINE": engine}
        if engine == "redis":
            from loadtest.fanout import own_redis

            env["RTT_REDIS_URL"] = stack.enter_context(own_redis())
        yield stack.enter_context(running(NodeProcess(env=env)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=("local", "redis"), default="local")
    parser.add_argument("--readers", type=int, default=300, help=f"≤ {MAX_READERS}")
    parser.add_argument("--messages", type=int, default=100, help=f"≤ {MAX_MESSAGES}")
    parser.add_argument("--sends", type=int, default=200, help=f"each phase, ≤ {MAX_SENDS}")
    parser.add_argument("--rows", type=int, default=100, help="rowsPerPage each reader asks")
    parser.add_argument("--timeout", type=float, default=30.0, help="bound of the attack, s")
    args = parser.parse_args(argv)
    with node(args.engine) as process:
        target = Target(process.http, process.host, process.port, process.pid)
        result = asyncio.run(
            measure(
                target,
                readers=max(1, min(args.readers, MAX_READERS)),
                messages=max(1, min(args.messages, MAX_MESSAGES)),
                sends=max(1, min(args.sends, MAX_SENDS)),
                timeout=min(args.timeout, 120.0),
                rows=max(1, min(args.rows, 100)),
            )
        )
    result["engine"] = args.engine
    print(orjson.dumps(result).decode())
    for key, value in result.items():
        print(f"  {key:>20} {value}", file=sys.stderr)


if __name__ == "__main__":
    main()
