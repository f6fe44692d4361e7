"""Start a real `rtt serve` subprocess on a free loopback port for a benchmark, and stop it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Node:
    host: str
    port: int
    pid: int

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}/rtt"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def rtt_node(extra_env: dict[str, str] | None = None, timeout: float = 15.0) -> Iterator[Node]:
    """A fresh node with its own config and database in a temp dir; always stopped."""
    with tempfile.TemporaryDirectory(prefix="rtt-bench-") as tmp:
        config = Path(tmp) / "apps.toml"
        config.write_text(CONFIG)
        port = _free_port()
        env = {**os.environ, "RTT_DATABASE": str(Path(tmp) / "rtt.db"), **(extra_env or {})}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtt",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).read()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("rtt node did not become ready") from None
                    time.sleep(0.05)
            yield Node("127.0.0.1", port, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
