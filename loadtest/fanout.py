"""Fan-out benchmark: C authenticated sockets, system messages to N recipients each.

    python -m loadtest.fanout --sockets 1000 --recipients 1000 --messages 50
    python -m loadtest.fanout --engine redis --nodes 2 --sockets 1000 --recipients 1000
    python -m loadtest.fanout --rate 20 --duration 5        # fixed rate instead of saturation

Starts its own nodes (and, for `--engine redis`, its own redis-server unless `--redis-url`),
connects the sockets round-robin over the nodes, sends round-robin through them, and reports
deliveries/s, publish→receive latency, loss and duplicates (by seq), server CPU per delivery,
RSS per idle socket and authenticated connects/s, as JSON then a table. Bounded in count and
time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import orjson
import redis
import websockets

from loadtest.node import APP, SECRET, SERVER_SECRET, Node, rtt_node

HARD_LIMIT_SECONDS = 300
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


@dataclass
class Receiver:
    """One socket's view: what arrived, in which order, how late."""

    profile: str
    last_seq: int = 0
    received: int = 0
    duplicates: int = 0
    gaps: int = 0
    latencies_ms: list[float] = field(default_factory=list)


async def _connect(node: Node, profile: str, timeout: float) -> websockets.ClientConnection:
    token = jwt.encode({"sub": profile, "app": APP, "exp": int(time.time()) + 3600}, SECRET)
    ws = await websockets.connect(
        f"{node.ws}?token={token}", max_size=2**22, compression=None, open_timeout=timeout
    )
    await ws.send('{"service":"rtt","operation":"CONNECT","data":{}}')
    await asyncio.wait_for(ws.recv(), timeout)
    return ws


async def _receive(ws: websockets.ClientConnection, r: Receiver) -> None:
    with contextlib.suppress(websockets.ConnectionClosed):
        async for raw in ws:
            now = time.time_ns()
            frame = orjson.loads(raw)
            seq = frame.get("seq")
            if seq is None:
                continue
            if seq <= r.last_seq:
                r.duplicates += 1
                continue
            r.gaps += seq - r.last_seq - 1
            r.last_seq = seq
            r.received += 1
            r.latencies_ms.append((now - frame["data"]["message"]["content"]["t"]) / 1e6)


def _send_body(recipients: list[str]) -> bytes:
    return orjson.dumps(
        {
            "appId": APP, "serverName": "backend", "serverSecret": SERVER_SECRET,
            "service": "messaging", "operation": "SYS_SEND_MESSAGE",
            "data": {"toProfileIds": recipients, "contentJson": {"t": time.time_ns()},
                     "fromJson": {"id": None, "name": "bench"}},
        }
    )  # fmt: skip


async def run(nodes: list[Node], args: argparse.Namespace) -> dict[str, Any]:
    profiles = [f"bench-{i}" for i in range(args.sockets)]
    recipients = profiles[: args.recipients]
    pids = [n.pid for n in nodes]
    rss_before = sum(rss_bytes(p) for p in pids)

    started = time.perf_counter()
    sockets: list[websockets.ClientConnection] = []
    for batch in range(0, len(profiles), 200):
        sockets += await asyncio.gather(
            *(
                _connect(nodes[i % len(nodes)], p, args.timeout)
                for i, p in enumerate(profiles[batch : batch + 200], start=batch)
            )
        )
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(0.5)
    rss_idle = sum(rss_bytes(p) for p in pids)

    receivers = [Receiver(p) for p in profiles]
    tasks = [asyncio.create_task(_receive(ws, r)) for ws, r in zip(sockets, receivers, strict=True)]
    clients = [httpx.AsyncClient(base_url=n.http, timeout=args.timeout) for n in nodes]
    cpu_before = sum(cpu_seconds(p) for p in pids)
    expected = args.messages * len(recipients)
    send_started = time.perf_counter()
    sent = 0

    async def send_one(i: int) -> None:
        response = await clients[i % len(clients)].post(
            "/s2sdispatcher", content=_send_body(recipients)
        )
        response.raise_for_status()

    if args.rate:
        in_flight = []
        for i in range(args.messages):
            target = send_started + i / args.rate
            await asyncio.sleep(max(0.0, target - time.perf_counter()))
            in_flight.append(asyncio.create_task(send_one(i)))
            sent += 1
        await asyncio.gather(*in_flight)
    else:
        semaphore = asyncio.Semaphore(args.concurrency)

        async def bounded(i: int) -> None:
            async with semaphore:
                await send_one(i)

        await asyncio.gather(*(bounded(i) for i in range(args.messages)))
        sent = args.messages
    deadline = time.perf_counter() + args.timeout + 10
    while sum(r.received for r in receivers) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - send_started
    cpu_used = sum(cpu_seconds(p) for p in pids) - cpu_before
    for ws in sockets:
        await ws.close()
    for t in tasks:
        t.cancel()
    for c in clients:
        await c.aclose()

    delivered = sum(r.received for r in receivers)
    latencies = sorted(x for r in receivers for x in r.latencies_ms)

    def pct(p: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)
            if latencies
            else 0.0
        )

    return {
        "engine": args.engine,
        "nodes": len(nodes),
        "sockets": args.sockets,
        "recipients": len(recipients),
        "messages": sent,
        "mode": f"rate {args.rate}/s" if args.rate else f"saturation x{args.concurrency}",
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / elapsed) if elapsed else 0,
        "p50_ms": pct(0.5),
        "p90_ms": pct(0.9),
        "p99_ms": pct(0.99),
        "lost": expected - delivered,
        "gaps": sum(r.gaps for r in receivers),
        "duplicates": sum(r.duplicates for r in receivers),
        "server_cpu_us_per_delivery": round(cpu_used * 1e6 / delivered, 2) if delivered else None,
        "rss_per_idle_socket_kib": round((rss_idle - rss_before) / args.sockets / 1024, 1),
        "connects_per_s": round(args.sockets / connect_seconds),
    }


@contextlib.contextmanager
def own_redis() -> Iterator[str]:
    """A throwaway redis-server on a free port, in memory only."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install -y redis-server, or pass --redis-url")
    with tempfile.TemporaryDirectory(prefix="rtt-bench-redis-") as tmp:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.3)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def commandstats(url: str) -> dict[str, int]:
    """Redis calls per command, to count round trips per send."""
    with redis.Redis.from_url(url) as r:
        stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["local", "redis"], default="local")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--recipients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4, help="sends in flight (saturation)")
    parser.add_argument("--rate", type=float, default=0, help="sends per second (fixed rate)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    args.nodes = max(1, min(args.nodes, 4))
    args.sockets = max(1, min(args.sockets, 10_000))
    args.recipients = max(1, min(args.recipients, args.sockets, 1000))
    args.messages = max(1, min(args.messages, 100_000))

    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {"RTT_ENGINE": args.engine}
        url = args.redis_url
        if args.engine == "redis":
            url = url or stack.enter_context(own_redis())
            env["RTT_REDIS_URL"] = url
        nodes = [stack.enter_context(rtt_node(env)) for _ in range(args.nodes)]
        before = commandstats(url) if url else {}
        result = asyncio.run(asyncio.wait_for(run(nodes, args), HARD_LIMIT_SECONDS))
        if url:
            after = commandstats(url)
            calls = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
            result["redis_calls_per_send"] = {
                k: round(v / result["messages"], 2) for k, v in sorted(calls.items())
            }
    print(orjson.dumps(result).decode())
    if not args.json:
        for key, value in result.items():
            print(f"  {key:>28}  {value}", file=sys.stderr)


if __name__ == "__main__":
    main()
