"""Real `rtt serve` subprocesses on free loopback ports, for benchmarks and multi-node tests.

`ServerProcess` is the process handling shared with the benchmark's peers (loadtest/peers/).
`NodeProcess` is one node: `start()` waits until `/readyz` answers 200, `kill()` is SIGKILL
(a crash: nothing is cleaned up), `stop()` is SIGTERM (graceful) with SIGKILL as a fallback.
`rtt_node()` is the benchmark's one-shot context manager around it (`running()` for any server).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

APP = "bench"
SECRET = "bench-client-secret-0123456789abcdef"
SERVER_SECRET = "bench-server-secret"
CONFIG = f"""
[apps.{APP}]
secret = "{SECRET}"
[apps.{APP}.servers]
backend = "{SERVER_SECRET}"
[apps.{APP}.limits]
client_requests_per_second = 1000
"""


P = TypeVar("P", bound="ServerProcess")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(pid: int, cpus: set[int]) -> None:
    """Put every thread of `pid` on `cpus` (threads it starts later inherit the affinity)."""
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(int(tid), cpus)


def children(pid: int) -> list[int]:
    """The pids of the live children of `pid` (none once it has ended)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except FileNotFoundError:
        return []


def affinity(pid: int) -> set[int]:
    """The union of the CPUs the threads of `pid` may run on."""
    cpus: set[int] = set()
    with contextlib.suppress(FileNotFoundError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(ProcessLookupError):
                cpus |= os.sched_getaffinity(int(tid))
    return cpus


class ServerProcess:
    """A server subprocess on a free loopback port, logging to a file in its own directory.

    Subclasses give `command()`; readiness is `GET {ready_path}` answering 200. `cpus` pins
    every thread of the process (right after launch and again once ready).
    """

    host = "127.0.0.1"
    ready_path = "/readyz"
    label = "server"

    def __init__(
        self,
        *,
        env: dict[str, str] | None = None,
        directory: Path | None = None,
        port: int | None = None,
        cpus: set[int] | None = None,
    ) -> None:
        self._owned_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix=f"rtt-{self.label}-"))
        self.port = port or free_port()
        self.log_path = self.directory / f"{self.label}-{self.port}.log"
        self.env = {**os.environ, **(env or {})}
        self.cpus = cpus
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.label} not started"
        return self.proc.pid

    def pids(self) -> list[int]:
        """The process and its children (`rtt serve --workers`' workers): what it costs in CPU
        and memory is theirs together."""
        return [self.pid, *children(self.pid)]

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    def launch(self) -> ServerProcess:
        """Start the process without waiting for it (see `wait_ready`)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        if self.cpus:
            pin(self.proc.pid, self.cpus)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http}{self.ready_path}", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = 15.0) -> ServerProcess:
        """Block until ready; raise (with the process's log) if it never is, after killing it:
        a caller whose start failed has nothing to stop, so nothing may outlive it."""
        assert self.proc is not None, f"{self.label} not launched"
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.label} did not become ready:\n{self.log_text()}")
            time.sleep(0.05)
        if self.cpus:
            pin(self.proc.pid, self.cpus)
        return self

    def start(self, timeout: float = 15.0) -> ServerProcess:
        return self.launch().wait_ready(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, exactly like a crash."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self, timeout: float = 10.0) -> bool:
        """Graceful stop (SIGTERM, then SIGKILL after `timeout`); removes a directory it created.
        False if the process had to be killed because it did not shut down by itself."""
        graceful = True
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                graceful = False
                self.kill()
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
        return graceful

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class NodeProcess(ServerProcess):
    """One `python -m rtt serve` process with its own apps TOML, database and log file.

    `env` adds `RTT_*` variables (e.g. RTT_ENGINE, RTT_REDIS_URL, RTT_PRESENCE_TTL_SECONDS).
    `workers` > 1 runs `rtt serve --workers N` (a supervisor and N node processes, redis only).
    The node's stdout/stderr go to `log_path`, so a failing test can show what the node said.
    """

    label = "node"

    def __init__(
        self,
        config: str = CONFIG,
        *,
        env: dict[str, str] | None = None,
        directory: Path | None = None,
        port: int | None = None,
        cpus: set[int] | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(env=env, directory=directory, port=port, cpus=cpus)
        self.workers = workers
        self._answered: set[int] = set()  # worker pids that answered /status
        self.config_path = self.directory / f"apps-{self.port}.toml"
        self.config_path.write_text(config)
        self.env = {
            **os.environ,
            "RTT_DATABASE": str(self.directory / f"rtt-{self.port}.db"),
            **(env or {}),
        }

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "rtt", "serve", "--config", str(self.config_path)),
            *("--host", self.host, "--port", str(self.port), "--log-level", "warning"),
            *(("--workers", str(self.workers)) if self.workers > 1 else ()),
        ]

    def ready(self) -> bool:
        """With `workers` > 1, ready once every worker has answered `/status` (each poll is a
        new connection, which the kernel gives to any listening worker)."""
        if self.workers == 1:
            return super().ready()
        try:
            with urllib.request.urlopen(f"{self.http}/status", timeout=1) as response:
                node = json.load(response)["node"]
        except (OSError, ValueError):  # refused, or 503 while its engine is not ready
            return False
        self._answered.add(int(node.rsplit(":", 1)[1]))
        return len(self.worker_pids() & self._answered) == self.workers

    def worker_pids(self) -> set[int]:
        """With `workers` > 1: the pids of the node processes the supervisor (`pid`) runs."""
        return set(children(self.pid))

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}/rtt"

    # the same names as tests/support/server.RunningServer, so test clients take either
    url = ServerProcess.http
    ws_url = ws


# kept for callers that imported the record type
Node = NodeProcess


@contextlib.contextmanager
def running(process: P, timeout: float = 15.0) -> Iterator[P]:
    """Start `process`, wait until it is ready, and always stop it."""
    try:
        process.start(timeout)
        yield process
    finally:
        process.stop()


def rtt_node(
    extra_env: dict[str, str] | None = None,
    timeout: float = 15.0,
    cpus: set[int] | None = None,
    workers: int = 1,
) -> contextlib.AbstractContextManager[NodeProcess]:
    """A fresh node with the bench app, its config and database in a temp dir; always stopped."""
    return running(NodeProcess(env=extra_env, cpus=cpus, workers=workers), timeout)
