"""One command for a bounded locust run: start a node, run loadtest/locustfile.py headless
against it, print locust's table, stop the node.

    python -m loadtest.locust_run --users 50 --run-time 10s

The node is a fresh `rtt serve` on a free loopback port with the bench app
(loadtest/node.py), which the locustfile's defaults already match. The exit status is
locust's: non-zero when any request failed. Needs locust (in the `test` and `load` extras).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from loadtest.node import rtt_node

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
MARGIN_SECONDS = 30.0  # locust's start-up and shutdown beyond --run-time
UNITS = {"h": 3600, "m": 60, "s": 1}


def seconds(run_time: str) -> float:
    """locust's --run-time ("10s", "1m30s", "2h") in seconds; ValueError if it is not one."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", run_time)
    if not run_time or parts is None:
        raise ValueError(f"run time {run_time!r}: use e.g. 10s, 1m30s, 2h")
    return float(sum(int(n) * UNITS[u] for n, u in zip(parts.groups(), "hms", strict=True) if n))


def locust_command(host: str, users: int, spawn_rate: float, run_time: str) -> list[str]:
    return [
        *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"),
        *("--host", host, "--users", str(users), "--spawn-rate", str(spawn_rate)),
        *("--run-time", run_time, "--only-summary", "--loglevel", "WARNING"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50, help="locust users (default 50)")
    parser.add_argument("--spawn-rate", type=float, help="users started per second (all in 1 s)")
    parser.add_argument("--run-time", default="10s", help="how long, e.g. 10s or 1m (default 10s)")
    parser.add_argument("--csv", help="also write locust's CSV files with this prefix")
    args = parser.parse_args(argv)
    try:
        limit = seconds(args.run_time) + MARGIN_SECONDS
    except ValueError as e:
        parser.error(str(e))
    with rtt_node() as node:
        command = locust_command(
            node.http, args.users, args.spawn_rate or args.users, args.run_time
        )
        if args.csv:
            command += ["--csv", args.csv]
        print(f"locust: {args.users} users for {args.run_time} against {node.http}", flush=True)
        try:
            # locust logs its table on stderr: print it on stdout, where a table belongs
            run = subprocess.run(command, timeout=limit, check=False, stderr=subprocess.STDOUT)
            return run.returncode
        except subprocess.TimeoutExpired:
            print(f"locust did not finish within {limit:.0f} s", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
