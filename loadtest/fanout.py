"""Fan-out benchmark: C sockets, system messages to N recipients each, against rtt and a peer.

    python -m loadtest.fanout --sockets 1000 --recipients 1000 --messages 50
    python -m loadtest.fanout --target both --pin --sockets 1000 --recipients 1000 --messages 60
    python -m loadtest.fanout --target rtt,floor --pin --sockets 2000 --recipients 1000
    python -m loadtest.fanout --target rtt,node --pin --sockets 5000 --recipients 1000
    python -m loadtest.fanout --target rtt --engine redis --nodes 2 --sockets 1000
    python -m loadtest.fanout --rate 20 --messages 100      # fixed rate instead of saturation
    python -m loadtest.fanout --target rtt --engine redis --workers 2   # rtt serve --workers 2
    python -m loadtest.fanout --target rtt --engine redis-cluster --masters 3   # Redis Cluster

`--target both` (the default) runs the same generator (same sockets, recipients, messages,
concurrency or rate) first against rtt, then against the peer: python-socketio with its Redis
manager (loadtest/peers/socketio_server.py), which persists nothing and checks no token, so the
comparison is conservative. `--target all` (or a list, `rtt,floor`) adds the transport floor
(loadtest/peers/floor_server.py): a picows broadcast server doing nothing but write, the least a
delivery costs on this machine today; `node` (in `all` too) is socket.io 4 on Node.js
(loadtest/peers/node_server.py), one process with its in-memory adapter, speaking and answering
exactly like the python peer: the server most teams reach for (it needs `node`, and `npm` to
install the pinned socket.io into .cache/ on first use). Every server is a subprocess started
here on a free loopback port; each target's servers are stopped before the next target's start.
Redis (for `--engine redis` and for the python peer) is a throwaway redis-server unless
`--redis-url`; `--engine redis-cluster` starts a throwaway cluster of `--masters` masters (no
replicas), and Redis's CPU and calls are then summed over its masters.

`--pin` (with at least 2 CPUs) puts every server process (rtt nodes, the peers, the throwaway
redis-server) on the first CPU and this generator on the second, and says so in the JSON.

Per target: deliveries/s, publish→receive latency (the send's `t` in the content), loss and
duplicates (by seq), server CPU µs per delivery (from /proc; Redis's own CPU from INFO, apart),
RSS per idle socket, authenticated connects/s (connect + login reply; tokens are minted before),
and how busy the generator and the server were while sending and while connecting.
`generator_bound` says when the generator was the limit (GENERATOR_BOUND busy or more): then
deliveries/s or connects/s is the generator's number, not the server's. With rtt and another
target, `ratio` divides them (keys name the other: `_peer_`, `_floor_`, `_node_`) so that
every ratio above 1 is rtt ahead. One JSON object on stdout, a table on stderr. Bounded: at
most 10,000 sockets, 1,000 recipients and 100,000 sends, and HARD_LIMIT_SECONDS per target.

The generator is one process on uvloop, cheap per frame so that it can keep up with the server:
sockets are raw RFC 6455 clients (loadtest/wsclient.py) with no task per socket, frames are
counted from their bytes (loadtest/counting.py), sends go over keep-alive HTTP/1.1
(loadtest/httpclient.py), and only a few tasks connect the sockets, many at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import redis
import uvloop

from loadtest.counting import CountingSocket, Tally
from loadtest.httpclient import HttpClient
from loadtest.node import affinity, pin, rtt_node
from loadtest.targets import FloorTarget, NodeTarget, PeerTarget, RttTarget, Target
from loadtest.wsclient import close_all, connect

HARD_LIMIT_SECONDS = 300  # per target
TICKS = os.sysconf("SC_CLK_TCK")
CONNECTS_IN_FLIGHT = 200
GENERATOR_BOUND = 0.9  # generator CPU busy from which its own limit shows in the numbers
TARGETS = ("rtt", "floor", "peer", "node")  # in the order they run and are shown
PACKAGES = {"rtt": "rtt", "floor": "picows", "peer": "python-socketio", "node": "socket.io"}


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


# -- the generator ------------------------------------------------------------------------------


def redis_cpu_seconds(dbs: list[redis.Redis]) -> float:
    """CPU seconds used by these Redis servers (every master of a cluster)."""
    infos = [r.info("cpu") for r in dbs]
    return sum(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]) for info in infos)


def commandstats(dbs: list[redis.Redis]) -> dict[str, int]:
    """Redis calls per command, to count round trips per send (summed over a cluster's
    masters)."""
    calls: collections.Counter[str] = collections.Counter()
    for r in dbs:
        for k, v in r.info("commandstats").items():
            calls[k.removeprefix("cmdstat_")] += int(v["calls"])
    return dict(calls)


async def connect_all(sockets: Sequence[CountingSocket], timeout: float) -> None:
    """Connect every socket, CONNECTS_IN_FLIGHT at a time (a few tasks, none per socket)."""
    pending = iter(sockets)

    async def worker() -> None:
        for s in pending:
            async with asyncio.timeout(timeout):
                await connect(s)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(CONNECTS_IN_FLIGHT, len(sockets))):
            group.create_task(worker())


async def run(target: Target, args: argparse.Namespace, dbs: list[redis.Redis]) -> dict[str, Any]:
    """Connect, measure idle RSS, send, wait for every delivery (bounded), measure."""
    profiles = [f"bench-{i}" for i in range(args.sockets)]
    recipients = profiles[: args.recipients]
    pids = [pid for s in target.servers for pid in s.pids()]  # with the workers of --workers
    workers = args.workers if isinstance(target, RttTarget) else 1
    rss_before = sum(rss_bytes(p) for p in pids)
    tally = Tally()
    sockets = target.sockets(profiles, tally)  # tokens are minted here, before the clock starts

    started = time.perf_counter()
    cpu_before = sum(cpu_seconds(p) for p in pids)
    own_cpu_before = time.process_time()
    try:
        await connect_all(sockets, args.timeout)
        connect_seconds = time.perf_counter() - started
        connects_cpu_busy = {
            "server": round((sum(cpu_seconds(p) for p in pids) - cpu_before) / connect_seconds, 2),
            "generator": round((time.process_time() - own_cpu_before) / connect_seconds, 2),
        }
        await asyncio.sleep(0.5)
        rss_idle = sum(rss_bytes(p) for p in pids)

        keepalive = asyncio.create_task(target.keepalive(sockets))
        # one sending connection per node process; the kernel picks the worker each one reaches
        clients = [
            HttpClient(s.host, s.port, args.timeout) for s in target.servers for _ in range(workers)
        ]
        try:
            before = commandstats(dbs)
            redis_cpu_before = redis_cpu_seconds(dbs)
            cpu_before = sum(cpu_seconds(p) for p in pids)
            own_cpu_before = time.process_time()
            expected = args.messages * len(recipients)
            send_started = time.perf_counter()
            sent = 0

            async def send_one(i: int) -> None:
                await clients[i % len(clients)].post(*target.request(recipients))

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
            while tally.received < expected and time.perf_counter() < deadline:
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - send_started
            cpu_used = sum(cpu_seconds(p) for p in pids) - cpu_before
            own_cpu = time.process_time() - own_cpu_before
            redis_cpu = redis_cpu_seconds(dbs) - redis_cpu_before
            after = commandstats(dbs)
        finally:
            keepalive.cancel()
            for c in clients:
                c.close()
    finally:
        await close_all(sockets, args.timeout)
    failures = [s.failure for s in sockets if s.failure]
    if failures:
        raise RuntimeError(f"{len(failures)} sockets saw the server break RFC 6455: {failures[0]}")

    delivered = tally.received
    p50, p90, p99 = tally.percentiles_ms(0.5, 0.9, 0.99)
    busiest = max(own_cpu / elapsed if elapsed else 0.0, connects_cpu_busy["generator"])

    def per_delivery(seconds: float) -> float | None:
        return round(seconds * 1e6 / delivered, 2) if delivered else None

    result: dict[str, Any] = {
        "engine": target.engine,
        "nodes": len(target.servers),
        "workers": workers,
        "sockets": args.sockets,
        "recipients": len(recipients),
        "messages": sent,
        "mode": f"rate {args.rate}/s" if args.rate else f"saturation x{args.concurrency}",
        "deliveries": delivered,
        "deliveries_per_s": round(delivered / elapsed) if elapsed else 0,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "lost": expected - delivered,
        "gaps": tally.gaps,
        "duplicates": tally.duplicates,
        "server_cpu_us_per_delivery": per_delivery(cpu_used),
        "redis_cpu_us_per_delivery": per_delivery(redis_cpu) if dbs else None,
        "total_cpu_us_per_delivery": per_delivery(cpu_used + redis_cpu),
        "server_cpu_busy": round(cpu_used / elapsed, 2) if elapsed else None,
        "generator_cpu_busy": round(own_cpu / elapsed, 2) if elapsed else None,
        "generator_cpu_us_per_delivery": per_delivery(own_cpu),
        "generator_bound": busiest >= GENERATOR_BOUND,
        "rss_per_idle_socket_kib": round((rss_idle - rss_before) / args.sockets / 1024, 1),
        "connects_per_s": round(args.sockets / connect_seconds),
        "connects_cpu_busy": connects_cpu_busy,
    }
    if dbs:
        result["redis_masters"] = len(dbs)
        calls = {k: after[k] - before.get(k, 0) for k in after if after[k] > before.get(k, 0)}
        calls.pop("info", None)  # our own measuring
        result["redis_calls_per_send"] = {k: round(v / sent, 2) for k, v in sorted(calls.items())}
    return result


# -- processes, pinning, phases -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def own_redis(cpus: set[int] | None = None, *, cluster: bool = False) -> Iterator[str]:
    """A throwaway redis-server on a free port, in memory only (pinned to `cpus` if given);
    with `cluster`, a cluster-enabled node that serves no slot yet (see own_cluster)."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server not found: apt-get install -y redis-server, or pass --redis-url")
    with tempfile.TemporaryDirectory(prefix="rtt-bench-redis-") as tmp:
        port = _free_port()
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp]
        if cluster:  # the bus on a port of its own: port + 10 000 may be past 65 535
            command += ["--cluster-enabled", "yes", "--cluster-port", str(_free_port()),
                        "--cluster-config-file", f"{tmp}/nodes.conf"]  # fmt: skip
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
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


@contextlib.contextmanager
def own_cluster(masters: int, cpus: set[int] | None = None) -> Iterator[list[str]]:
    """A throwaway Redis Cluster of `masters` masters without replicas (a benchmark of
    throughput, not of failover), the 16 384 slots split evenly: the masters' URLs, the first
    one the seed. Built by hand (ADDSLOTSRANGE, MEET): `redis-cli --cluster create` wants 3
    masters at least, and 1 master is the figure to compare with."""
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(own_redis(cpus, cluster=True)) for _ in range(masters)]
        clients = [stack.enter_context(redis.Redis.from_url(url)) for url in urls]
        bounds = [16384 * i // masters for i in range(masters + 1)]
        seed = (
            clients[0].connection_pool.connection_kwargs["port"],
            clients[0].config_get("cluster-port")["cluster-port"],  # its bus: not port + 10 000
        )
        for i, client in enumerate(clients):
            client.execute_command("CLUSTER ADDSLOTSRANGE", bounds[i], bounds[i + 1] - 1)
            if i:
                client.execute_command("CLUSTER MEET", "127.0.0.1", *seed)
        deadline = time.monotonic() + 30
        while not all(
            c.execute_command("CLUSTER INFO").get("cluster_state") == "ok"
            and int(c.execute_command("CLUSTER INFO").get("cluster_known_nodes", 0)) == masters
            for c in clients
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's cluster did not become ok in 30 s")
            time.sleep(0.1)
        yield urls


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
    name: str,
    args: argparse.Namespace,
    redis_url: str | None,
    cpus: set[int] | None,
    cluster: list[str] | None = None,
) -> dict[str, Any]:
    """Start `name`'s servers, run the generator against them, stop them. `cluster`: the
    masters' URLs rtt uses with `--engine redis-cluster`."""
    version: str | None = None  # a Python distribution's, looked up below, unless npm's
    with contextlib.ExitStack() as stack:
        target: Target
        measured = [redis_url] if redis_url else []
        if name == "rtt":
            # the node's connection ceiling above the sockets, with room for the senders
            env = {"RTT_ENGINE": args.engine, "RTT_MAX_CONNECTIONS": str(args.sockets + 64)}
            if cluster:
                env |= {"RTT_ENGINE": "redis", "RTT_REDIS_CLUSTER": "true"}
                env["RTT_REDIS_URL"] = cluster[0]
                measured = cluster
            elif args.engine == "redis":
                assert redis_url
                env["RTT_REDIS_URL"] = redis_url
            else:
                measured = []
            nodes = [
                stack.enter_context(rtt_node(env, cpus=cpus, workers=args.workers))
                for _ in range(args.nodes)
            ]
            target = RttTarget(nodes, args.engine)
        elif name == "floor":
            from loadtest.peers.floor_server import floor_peer

            target = FloorTarget(stack.enter_context(floor_peer(cpus=cpus)))
            measured = []
        elif name == "node":
            from loadtest.peers.node_server import node_peer, socketio_version

            node = stack.enter_context(node_peer(cpus=cpus))
            target = NodeTarget(node)
            version = socketio_version(node.modules)
            measured = []
        else:
            from loadtest.peers.socketio_server import socketio_peer

            assert redis_url
            target = PeerTarget(stack.enter_context(socketio_peer(redis_url, cpus=cpus)))
        dbs = [stack.enter_context(redis.Redis.from_url(url)) for url in measured]
        for db in dbs:
            db.ping()  # connect (and say HELLO) before anything is counted
        result = uvloop.run(asyncio.wait_for(run(target, args, dbs), HARD_LIMIT_SECONDS))
        package = PACKAGES[name]
        result["server"] = f"{package} {version or importlib.metadata.version(package)}"
        if cpus:
            pids = [s.pid for s in target.servers]
            result["pinned"] = all(affinity(p) == cpus for p in pids)
        return result


def ratios(rtt: dict[str, Any], peer: dict[str, Any], name: str) -> dict[str, float | None]:
    """rtt against the target `name`: each ratio is arranged so that above 1 means rtt is
    ahead."""

    def div(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b and a > 0 and b > 0 else None

    def peer_over_rtt(key: str) -> float | None:
        return div(peer[key], rtt[key])

    return {
        f"server_cpu_per_delivery_{name}_over_rtt": peer_over_rtt("server_cpu_us_per_delivery"),
        f"total_cpu_per_delivery_{name}_over_rtt": peer_over_rtt("total_cpu_us_per_delivery"),
        f"deliveries_per_s_rtt_over_{name}": div(rtt["deliveries_per_s"], peer["deliveries_per_s"]),
        f"p50_ms_{name}_over_rtt": peer_over_rtt("p50_ms"),
        f"p99_ms_{name}_over_rtt": peer_over_rtt("p99_ms"),
        f"rss_per_idle_socket_{name}_over_rtt": peer_over_rtt("rss_per_idle_socket_kib"),
        f"connects_per_s_rtt_over_{name}": div(rtt["connects_per_s"], peer["connects_per_s"]),
    }


def target_list(value: str) -> list[str]:
    """`both` (rtt and the python-socketio peer), `all`, or a comma list of TARGETS."""
    names = {"both": ["rtt", "peer"], "all": list(TARGETS)}.get(value, value.split(","))
    if not names or any(n not in TARGETS for n in names):
        raise argparse.ArgumentTypeError(f"expected both, all or a list of {', '.join(TARGETS)}")
    return [n for n in TARGETS if n in names]


def table(report: dict[str, Any]) -> str:
    """The report as aligned text: one column per target, then the ratios."""
    sides = [t for t in TARGETS if t in report]
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
    parser.add_argument("--target", default="both", help="both, all, or e.g. rtt,node")
    parser.add_argument(
        "--engine", choices=["local", "redis", "redis-cluster"], default="local", help="rtt's"
    )
    parser.add_argument(
        "--masters", type=int, default=3, help="masters of --engine redis-cluster's own cluster"
    )
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--nodes", type=int, default=1, help="rtt nodes (the peer is one)")
    parser.add_argument(
        "--workers", type=int, default=1, help="rtt serve --workers per node (redis engine)"
    )
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
    args.masters = max(1, min(args.masters, 8))
    args.workers = max(1, min(args.workers, 8))
    args.sockets = max(1, min(args.sockets, 10_000))
    args.recipients = max(1, min(args.recipients, args.sockets, 1000))
    args.messages = max(1, min(args.messages, 100_000))
    args.concurrency = max(1, min(args.concurrency, 256))
    args.timeout = max(1.0, min(args.timeout, 60.0))
    try:
        targets = target_list(args.target)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))

    cpus, pinning = plan_pinning(args.pin)
    report: dict[str, Any] = {"target": args.target, "pinning": pinning}
    with contextlib.ExitStack() as stack:
        url = args.redis_url
        if "peer" in targets or args.engine == "redis":
            url = url or stack.enter_context(own_redis(cpus))
            if cpus:
                ours = args.redis_url is None
                pinning["redis_pinned"] = ours and affinity(redis_pid(url)) == cpus
        if "node" in targets:
            from loadtest.peers.node_server import NodeMissing, install

            try:
                install()  # before any target runs: npm's first install is not timed, nor late
            except NodeMissing as e:
                sys.exit(str(e))
        cluster = None
        if args.engine == "redis-cluster":
            cluster = stack.enter_context(own_cluster(args.masters, cpus))
        for name in targets:
            report[name] = phase(name, args, url, cpus, cluster)
    if "rtt" in targets and len(targets) > 1:
        others = [t for t in targets if t != "rtt"]
        report["ratio"] = {
            k: v for t in others for k, v in ratios(report["rtt"], report[t], t).items()
        }
    print(orjson.dumps(report).decode(), flush=True)
    if not args.json:
        print(table(report), file=sys.stderr)


if __name__ == "__main__":
    main()
