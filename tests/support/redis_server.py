"""A real `redis-server` on a free loopback port in a temp dir, that tests may kill and restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process; `appendonly` turns on AOF (fsync every write) for restart tests."""

    def __init__(
        self, *, appendonly: bool = False, directory: Path | None = None, cluster: bool = False
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
        self.binary = binary
        self.port = _free_port()
        self.appendonly = appendonly
        self.cluster = cluster  # a node of a Redis Cluster (tests/support/redis_cluster.py)
        self.bus_port = _free_port() if cluster else 0
        self._owned_dir = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="rtt-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.directory), "--save", "", "--daemonize", "no",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always", "--loglevel", "warning",
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000",
                     "--cluster-port", str(self.bus_port),  # not port + 10000: maybe > 65535
                     "--cluster-config-file", str(self.directory / "nodes.conf")]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer in time")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown save, exactly like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def restart(self, *, wipe: bool = False, timeout: float = 10.0) -> RedisServer:
        """Crash (SIGKILL) if running, then start again on the same port and directory;
        `wipe` empties the directory first, so Redis comes back without its data."""
        self.kill()
        if wipe:
            for entry in self.directory.iterdir():
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        return self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP: the process hangs with its sockets open, like a stalled Redis."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.resume()  # a paused process would not act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
