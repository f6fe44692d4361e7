"""Fan-out benchmark: C sockets, system messages to N recipients each, against rtt and a peer.

    python -m loadtest.fanout --sockets 1000 --recipients 1000 --messages 50
    python -m loadtest.fanout --target both --pin --sockets 1000 --recipients 1000 --messages 60
    python -m loadtest.fanout --target rtt --engine redis --nodes 2 --sockets 1000
    python -m loadtest.fanout --rate 20 --messages 100      # fixed rate instead of saturation

`--target both` (the default) runs the same generator (same sockets, recipients, messages,
concurrency or rate) first against rtt, then against the peer: python-socketio with its Redis
manager (loadtest/peers/socketio_server.py), which persists nothing and checks no token, so the
comparison is conservative. Every server is a subprocess started here on a free loopback port;
rtt nodes are stopped before the peer starts. Redis (for `--engine redis` and for the peer) is
a throwaway redis-server unless `--redis-url`.

`--pin` (with at least 2 CPUs) puts every server process (rtt nodes, the peer, the throwaway
redis-server) on the first CPU and this generator on the second, and says so in the JSON.

Per target: deliveries/s, publish→receive latency (the send's `t` in the content), loss and
duplicates (by seq), server CPU µs per delivery (from /proc; Redis's own CPU from INFO, apart),
RSS per idle socket, connects/s, and how busy the generator was (near 1.0 means the generator,
not the server, limited deliveries/s). With both targets, `ratio` divides them so that every
ratio above 1 is rtt ahead. One JSON object on stdout, a table on stderr. Bounded: at most
10,000 sockets, 1,000 recipients and 100,000 sends, and HARD_LIMIT_SECONDS per target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import orjson
import redis
import websockets

from loadtest.node import APP, SECRET, SERVER_SECRET, Node, ServerProcess, affinity, pin, rtt_node

if TYPE_CHECKING:
    from loadtest.peers.socketio_server import PeerProcess

HARD_LIMIT_SECONDS = 300  # per target
TICKS = os.sysconf("SC_CLK_TCK")
CONNECT_BATCH = 200


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

    def account(self, frame: dict[str, Any], now: int) -> None:
        """Count one pushed frame (`{"seq": n, "data": {"message": {"content": {"t": ns}}}}`)."""
        seq = frame.get("seq")
        if seq is None:
            return
        if seq <= self.last_seq:
            self.duplicates += 1
            return
        self.gaps += seq - self.last_seq - 1
        self.last_seq = seq
        self.received += 1
        self.latencies_ms.append((now - frame["data"]["message"]["content"]["t"]) / 1e6)


# -- targets: how to connect, receive and send; everything else is shared -----------------------


class RttTarget:
    """rtt nodes: JWT + CONNECT on /rtt, frames as sent, sends via S2S `SYS_SEND_MESSAGE`."""

    name = "rtt"

    def __init__(self, nodes: list[Node], engine: str) -> None:
        self.nodes = nodes
        self.engine = engine
        self.heartbeat_seconds = 30.0

    @property
    def servers(self) -> list[ServerProcess]:
        return list(self.nodes)

    @property
    def bases(self) -> list[str]:
        return [n.http for n in self.nodes]

    async def connect(self, i: int, profile: str, timeout: float) -> websockets.ClientConnection:
        node = self.nodes[i % len(self.nodes)]
        token = jwt.encode({"sub": profile, "app": APP, "exp": int(time.time()) + 3600}, SECRET)
        ws = await websockets.connect(
            f"{node.ws}?token={token}", max_size=2**22, compression=None, open_timeout=timeout
        )
        await ws.send('{"service":"rtt","operation":"CONNECT","data":{}}')
        reply = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
        self.heartbeat_seconds = float(reply["data"]["heartbeatSeconds"])
        return ws

    async def receive(self, ws: websockets.ClientConnection, r: Receiver) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                r.account(orjson.loads(raw), time.time_ns())

    async def keepalive(self, sockets: list[websockets.ClientConnection]) -> None:
        """rtt closes a socket silent for twice heartbeatSeconds: heartbeat like a client would."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            for ws in sockets:
                with contextlib.suppress(websockets.ConnectionClosed):
                    await ws.send('{"service":"rtt","operation":"HEARTBEAT","data":{}}')

    def request(self, recipients: list[str]) -> tuple[str, bytes]:
        return "/s2sdispatcher", orjson.dumps(
            {
                "appId": APP, "serverName": "backend", "serverSecret": SERVER_SECRET,
                "service": "messaging", "operation": "SYS_SEND_MESSAGE",
                "data": {"toProfileIds": recipients, "contentJson": {"t": time.time_ns()},
                         "fromJson": {"id": None, "name": "bench"}},
            }
        )  # fmt: skip


class PeerTarget:
    """The python-socketio peer, spoken to as Engine.IO v4 over plain `websockets`.

    Server `0{...}` opens, client `40{"profile":...}` connects the namespace with auth, server
    `40{"sid":...}` confirms; events arrive as `42["message",{...}]`; server ping `2`, pong `3`.
    """

    name = "peer"
    engine = "socketio+redis"

    def __init__(self, peer: PeerProcess) -> None:
        self.peer = peer

    @property
    def servers(self) -> list[ServerProcess]:
        return [self.peer]

    @property
    def bases(self) -> list[str]:
        return [self.peer.http]

    async def connect(self, i: int, profile: str, timeout: float) -> websockets.ClientConnection:
        ws = await websockets.connect(
            self.peer.ws, max_size=2**22, compression=None, open_timeout=timeout
        )
        opened = await asyncio.wait_for(ws.recv(), timeout)
        if not str(opened).startswith("0{"):
            raise RuntimeError(f"expected an Engine.IO open packet, got {opened!r:.100}")
        await ws.send("40" + orjson.dumps({"profile": profile}).decode())
        reply = await asyncio.wait_for(ws.recv(), timeout)
        if not str(reply).startswith("40"):
            raise RuntimeError(f"namespace connect refused: {reply!r:.200}")
        return ws

    async def receive(self, ws: websockets.ClientConnection, r: Receiver) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                now = time.time_ns()
                if raw == "2":
                    await ws.send("3")
                elif raw[:2] == "42":
                    event, frame = orjson.loads(raw[2:])[:2]
                    if event == "message":
                        r.account(frame, now)

    async def keepalive(self, sockets: list[websockets.ClientConnection]) -> None:
        """Engine.IO keeps itself alive: the server pings, `receive` answers."""

    def request(self, recipients: list[str]) -> tuple[str, bytes]:
        return "/send", orjson.dumps({"to": recipients, "content": {"t": time.time_ns()}})


Target = RttTarget | PeerTarget


# -- the generator ------------------------------------------------------------------------------


def redis_cpu_seconds(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def commandstats(r: redis.Redis) -> dict[str, int]:
    """Redis calls per command, to count round trips per send."""
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in r.info("commandstats").items()}


async def run(target: Target, args: argparse.Namespace, db: redis.Redis | None) -> dict[str, Any]:
    """Connect, measure idle RSS, send, wait for every delivery (bounded), measure."""
    profiles = [f"bench-{i}" for i in range(args.sockets)]
    recipients = profiles[: args.recipients]
    pids = [s.pid for s in target.servers]
    rss_before = sum(rss_bytes(p) for p in pids)

    started = time.perf_counter()
    sockets: list[websockets.ClientConnection] = []
    try:
        for batch in range(0, len(profiles), CONNECT_BATCH):
            sockets += await asyncio.gather(
                *(
                    target.connect(i, p, args.timeout)
                    for i, p in enumerate(profiles[batch : batch + CONNECT_BATCH], start=batch)
                )
            )
        connect_seconds = time.perf_counter() - started
        await asyncio.sleep(0.5)
        rss_idle = sum(rss_bytes(p) for p in pids)

        receivers = [Receiver(p) for p in profiles]
        tasks = [
            asyncio.create_task(target.receive(ws, r))
            for ws, r in zip(sockets, receivers, strict=True)
        ]
        tasks.append(asyncio.create_task(target.keepalive(sockets)))
        clients = [httpx.AsyncClient(base_url=b, timeout=args.timeout) for b in target.bases]
        try:
            before = commandstats(db) if db else {}
            redis_cpu_before = redis_cpu_seconds(db) if db else 0.0
            cpu_before = sum(cpu_seconds(p) for p in pids)
            own_cpu_before = time.process_time()
            expected = args.messages * len(recipients)
            send_started = time.perf_counter()
            sent = 0

            async def send_one(i: int) -> None:
                path, body = target.request(recipients)
                response = await clients[i % len(clients)].post(path, content=body)
                response.raise_for_status()

            if args.rate:
                in_flight = []
                for i in range(args.messages):
                    at = send_started + i / args.rate
                    await asyncio.sleep(max(0.0, at - time.perf_counter()))
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
            own_cpu = time.process_time() - own_cpu_before
            redis_cpu = redis_cpu_seconds(db) - redis_cpu_before if db else 0.0
            after = commandstats(db) if db else {}
        finally:
            for t in tasks:
                t.cancel()
            for c in clients:
                await c.aclose()
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)

    delivered = sum(r.received for r in receivers)
    latencies = sorted(x for r in receivers for x in r.latencies_ms)

    def pct(p: float) -> float:
        return (
            round(latencies[min(len(latencies) - 1, int(p * len(latencies)))], 2)
            if latencies
            else 0.0
        )

    def per_delivery(seconds: float) -> float | None:
        return round(seconds * 1e6 / delivered, 2) if delivered else None

    result: dict[str, Any] = {
        "engine": target.engine,
        "nodes": len(pids),
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
        "server_cpu_us_per_delivery": per_delivery(cpu_used),
        "redis_cpu_us_per_delivery": per_delivery(redis_cpu) if db else None,
        "total_cpu_us_per_delivery": per_delivery(cpu_used + redis_cpu),
        "server_cpu_busy": round(cpu_used / elapsed, 2) if elapsed else None,
        "generator_cpu_busy": round(own_cpu / elapsed, 2) if elapsed else None,
        "rss_per_idle_socket_kib": round((rss_idle - rss_before) / args.sockets / 1024, 1),
        "connects_per_s": round(args.sockets / connect_seconds),
    }
    if db:
        calls = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
        calls.pop("info", None)  # our own measuring
        result["redis_calls_per_send"] = {k: round(v / sent, 2) for k, v in sorted(calls.items())}
    return result


# -- processes, pinning, phases -----------------------------------------------------------------


@contextlib.contextmanager
def own_redis(cpus: set[int] | None = None) -> Iterator[str]:
    """A throwaway redis-server on a free port, in memory only (pinned to `cpus` if given)."""
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
            if cpus:
                pin(proc.pid, cpus)
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + 10
            while True:
                try:
                    with redis.Redis.from_url(url) as r:
                        r.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            if cpus:
                pin(proc.pid, cpus)  # its background threads too
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def redis_pid(url: str) -> int:
    with redis.Redis.from_url(url) as r:
        return int(r.info("server")["process_id"])


def plan_pinning(requested: bool) -> tuple[set[int] | None, dict[str, Any]]:
    """Servers on the first allowed CPU, this generator on the second; None if not pinning."""
    allowed = sorted(os.sched_getaffinity(0))
    if not requested:
        return None, {"requested": False, "applied": False}
    if len(allowed) < 2:
        return None, {"requested": True, "applied": False, "reason": f"{len(allowed)} CPU"}
    servers, generator = {allowed[0]}, {allowed[1]}
    pin(os.getpid(), generator)
    info = {"requested": True, "applied": True}
    return servers, {**info, "server_cpus": [allowed[0]], "generator_cpus": [allowed[1]]}


def phase(
    name: str, args: argparse.Namespace, redis_url: str | None, cpus: set[int] | None
) -> dict[str, Any]:
    """Start `name`'s servers, run the generator against them, stop them."""
    with contextlib.ExitStack() as stack:
        target: Target
        if name == "rtt":
            env = {"RTT_ENGINE": args.engine}
            if args.engine == "redis":
                assert redis_url
                env["RTT_REDIS_URL"] = redis_url
            else:
                redis_url = None
            nodes = [stack.enter_context(rtt_node(env, cpus=cpus)) for _ in range(args.nodes)]
            target = RttTarget(nodes, args.engine)
        else:
            from loadtest.peers.socketio_server import socketio_peer

            assert redis_url
            target = PeerTarget(stack.enter_context(socketio_peer(redis_url, cpus=cpus)))
        db = stack.enter_context(redis.Redis.from_url(redis_url)) if redis_url else None
        if db:
            db.ping()  # connect (and say HELLO) before anything is counted
        result = asyncio.run(asyncio.wait_for(run(target, args, db), HARD_LIMIT_SECONDS))
        package = "rtt" if name == "rtt" else "python-socketio"
        result["server"] = f"{package} {importlib.metadata.version(package)}"
        if cpus:
            pids = [s.pid for s in target.servers]
            result["pinned"] = all(affinity(p) == cpus for p in pids)
        return result


def ratios(rtt: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    """Each ratio is arranged so that above 1 means rtt is ahead."""

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b and a > 0 and b > 0 else None

    def peer_over_rtt(key: str) -> float | None:
        return div(peer[key], rtt[key])

    return {
        "server_cpu_per_delivery_peer_over_rtt": peer_over_rtt("server_cpu_us_per_delivery"),
        "total_cpu_per_delivery_peer_over_rtt": peer_over_rtt("total_cpu_us_per_delivery"),
        "deliveries_per_s_rtt_over_peer": div(rtt["deliveries_per_s"], peer["deliveries_per_s"]),
        "p50_ms_peer_over_rtt": peer_over_rtt("p50_ms"),
        "p99_ms_peer_over_rtt": peer_over_rtt("p99_ms"),
        "rss_per_idle_socket_peer_over_rtt": peer_over_rtt("rss_per_idle_socket_kib"),
        "connects_per_s_rtt_over_peer": div(rtt["connects_per_s"], peer["connects_per_s"]),
    }


def table(report: dict[str, Any]) -> str:
    """The report as aligned text: one column per target, then the ratios."""
    sides = [t for t in ("rtt", "peer") if t in report]
    keys = list(dict.fromkeys(k for t in sides for k in report[t]))
    wide = [k for k in keys if any(isinstance(report[t].get(k), dict) for t in sides)]
    w = max(len(k) for k in [*keys, *report.get("ratio", {})])

    def cell(value: Any) -> str:
        if isinstance(value, dict):
            return " ".join(f"{k}={v:g}" for k, v in value.items()) or "-"
        return "-" if value is None else str(value)

    lines = [f"{'':>{w}}  " + "".join(f"{t:<24}" for t in sides)]
    for k in keys:
        if k not in wide:
            lines.append(f"{k:>{w}}  " + "".join(f"{cell(report[t].get(k)):<24}" for t in sides))
    for k in wide:
        lines += [f"{f'{k} ({t})':>{w}}  {cell(report[t].get(k))}" for t in sides]
    if "ratio" in report:
        lines.append(f"{'ratios (above 1: rtt ahead)':>{w}}")
        lines += [f"{k:>{w}}  {cell(v)}" for k, v in report["ratio"].items()]
    pinning = report["pinning"]
    if pinning["applied"]:
        note = f"servers on CPU {pinning['server_cpus']}, generator on {pinning['generator_cpus']}"
        if "redis_pinned" in pinning:
            note += f", redis-server pinned with the servers: {pinning['redis_pinned']}"
    else:
        note = pinning.get("reason", "not requested")
    lines.append(f"{'pinning':>{w}}  {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=["rtt", "peer", "both"], default="both")
    parser.add_argument("--engine", choices=["local", "redis"], default="local", help="rtt's")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--nodes", type=int, default=1, help="rtt nodes (the peer is one)")
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--recipients", type=int, default=200)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4, help="sends in flight (saturation)")
    parser.add_argument("--rate", type=float, default=0, help="sends per second (fixed rate)")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--pin", action="store_true", help="servers on CPU 0, generator on 1")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    args.nodes = max(1, min(args.nodes, 4))
    args.sockets = max(1, min(args.sockets, 10_000))
    args.recipients = max(1, min(args.recipients, args.sockets, 1000))
    args.messages = max(1, min(args.messages, 100_000))
    args.concurrency = max(1, min(args.concurrency, 256))
    args.timeout = max(1.0, min(args.timeout, 60.0))
    targets = ["rtt", "peer"] if args.target == "both" else [args.target]

    cpus, pinning = plan_pinning(args.pin)
    report: dict[str, Any] = {"target": args.target, "pinning": pinning}
    with contextlib.ExitStack() as stack:
        url = args.redis_url
        if "peer" in targets or args.engine == "redis":
            url = url or stack.enter_context(own_redis(cpus))
            if cpus:
                ours = args.redis_url is None
                pinning["redis_pinned"] = ours and affinity(redis_pid(url)) == cpus
        for name in targets:
            report[name] = phase(name, args, url, cpus)
    if len(targets) == 2:
        report["ratio"] = ratios(report["rtt"], report["peer"])
    print(orjson.dumps(report).decode(), flush=True)
    if not args.json:
        print(table(report), file=sys.stderr)


if __name__ == "__main__":
    main()
