"""The kernel's floor for fan-out on this machine: CPU per `send()` of one small frame.

    python -m loadtest.floor --sockets 1000 --rounds 100

A fan-out cannot cost less than one `send()` per socket, and on loopback that call also pays
for the receiving side's TCP work. This measures it with nothing else in the way: a plain
Python loop writing a pre-built ~150-byte WebSocket frame to C connected sockets (this process
on the first CPU), while a reader subprocess drains them with epoll (on the second CPU, as
the fan-out benchmark's generator). The figure is the writer's user + system CPU per send:
what `server_cpu_us_per_delivery` in `loadtest.fanout` would be if rtt did nothing but write.
Sockets have TCP_NODELAY, as rtt's do (a pushed frame leaves at once); `--nagle` shows what
letting the kernel hold small writes back would save.
One JSON object on stdout. Bounded: at most 10,000 sockets and 1,000 rounds, loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import subprocess
import sys
import time

import orjson

FRAME = b"\x81\x7e\x00\x96" + b"x" * 150  # a text frame with a 150-byte payload
MAX_SOCKETS, MAX_ROUNDS = 10_000, 1_000


def read(port: int, sockets: int, total: int) -> None:
    """The reader: connect `sockets` times, then drain until `total` bytes have arrived."""
    conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(sockets)]
    poller = select.epoll()
    by_fd = {}
    for conn in conns:
        conn.setblocking(False)
        poller.register(conn.fileno(), select.EPOLLIN)
        by_fd[conn.fileno()] = conn
    received, deadline = 0, time.monotonic() + 120
    while received < total and time.monotonic() < deadline:
        for fd, _ in poller.poll(1.0):
            with contextlib.suppress(BlockingIOError):
                received += len(by_fd[fd].recv(1 << 16))


def measure(sockets: int, rounds: int, pin: bool, nagle: bool) -> dict[str, object]:
    """Write `rounds` frames to each of `sockets` sockets; the writer's CPU per send."""
    cpus = sorted(os.sched_getaffinity(0))
    pinned = pin and len(cpus) >= 2
    listener = socket.create_server(("127.0.0.1", 0), backlog=sockets)
    port = listener.getsockname()[1]
    reader = subprocess.Popen(
        [sys.executable, "-m", "loadtest.floor", "--read", str(port), str(sockets), str(rounds)]
    )
    try:
        if pinned:
            os.sched_setaffinity(reader.pid, {cpus[1]})
            os.sched_setaffinity(0, {cpus[0]})
        conns = [listener.accept()[0] for _ in range(sockets)]
        for conn in conns:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, int(not nagle))
        time.sleep(0.2)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(rounds):
            for conn in conns:
                conn.send(FRAME)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        reader.wait(timeout=120)
    finally:
        if reader.poll() is None:
            reader.kill()
        listener.close()
    sends = sockets * rounds
    return {
        "sockets": sockets,
        "rounds": rounds,
        "frame_bytes": len(FRAME),
        "pinned": pinned,
        "nodelay": not nagle,
        "cpu_us_per_send": round(cpu / sends * 1e6, 2),
        "sends_per_s": round(sends / wall),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.floor", description=__doc__)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--no-pin", action="store_true", help="leave both processes unpinned")
    parser.add_argument(
        "--nagle", action="store_true", help="leave Nagle on (rtt, like uvicorn, sets TCP_NODELAY)"
    )
    parser.add_argument("--read", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.read:
        port, sockets, rounds = args.read
        read(port, sockets, sockets * rounds * len(FRAME))
        return
    if not (0 < args.sockets <= MAX_SOCKETS and 0 < args.rounds <= MAX_ROUNDS):
        parser.error(f"--sockets ≤ {MAX_SOCKETS}, --rounds ≤ {MAX_ROUNDS}")
    print(orjson.dumps(measure(args.sockets, args.rounds, not args.no_pin, args.nagle)).decode())


if __name__ == "__main__":
    main()
