"""Real `rtt serve` subprocesses on free loopback ports, for benchmarks and multi-node tests.

`NodeProcess` is one node: `start()` waits until `/readyz` answers 200, `kill()` is SIGKILL
(a crash: nothing is cleaned up), `stop()` is SIGTERM (graceful) with SIGKILL as a fallback.
`rtt_node()` is the benchmark's one-shot context manager around it.
"""

from __future__ import annotations

import contextlib
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    """One `python -m rtt serve` process with its own apps TOML, database and log file.

    `env` adds `RTT_*` variables (e.g. RTT_ENGINE, RTT_REDIS_URL, RTT_PRESENCE_TTL_SECONDS).
    The node's stdout/stderr go to `log_path`, so a failing test can show what the node said.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        config: str = CONFIG,
        *,
        env: dict[str, str] | None = None,
        directory: Path | None = None,
        port: int | None = None,
    ) -> None:
        self._owned_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="rtt-node-"))
        self.port = port or free_port()
        self.config_path = self.directory / f"apps-{self.port}.toml"
        self.config_path.write_text(config)
        self.log_path = self.directory / f"node-{self.port}.log"
        self.env = {
            **os.environ,
            "RTT_DATABASE": str(self.directory / f"rtt-{self.port}.db"),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "node not started"
        return self.proc.pid

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}/rtt"

    # the same names as tests/support/server.RunningServer, so test clients take either
    url = http
    ws_url = ws

    def launch(self) -> NodeProcess:
        """Start the process without waiting for it (see `wait_ready`)."""
        command = [sys.executable, "-m", "rtt", "serve", "--config", str(self.config_path)]
        command += ["--host", self.host, "--port", str(self.port), "--log-level", "warning"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http}/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = 15.0) -> NodeProcess:
        """Block until `/readyz` answers 200; raise (with the node's log) if it never does."""
        assert self.proc is not None, "node not launched"
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"rtt node did not become ready:\n{self.log_text()}")
            time.sleep(0.05)
        return self

    def start(self, timeout: float = 15.0) -> NodeProcess:
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
        False if the node had to be killed because it did not shut down by itself."""
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


# kept for callers that imported the record type
Node = NodeProcess


@contextlib.contextmanager
def rtt_node(
    extra_env: dict[str, str] | None = None, timeout: float = 15.0
) -> Iterator[NodeProcess]:
    """A fresh node with the bench app, its config and database in a temp dir; always stopped."""
    node = NodeProcess(env=extra_env)
    try:
        yield node.start(timeout)
    finally:
        node.stop()
