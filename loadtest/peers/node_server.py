"""The fan-out benchmark's Node.js peer: socket.io 4 on Node, the server most teams reach for.

    python -m loadtest.fanout --target rtt,node --pin --sockets 5000 --recipients 1000

loadtest/peers/socketio_node/server.js is socket.io on Node's `http` server, WebSocket only, no
permessage-deflate, one process with the in-memory adapter; it speaks and answers exactly like
the python-socketio peer (loadtest/peers/socketio_server.py), so the same generator socket and
`POST /send` body drive both. Like it, it persists nothing and authenticates nobody.

socket.io is pinned in socketio_node/package.json and package-lock.json and installed with
`npm ci` on first use into .cache/ (gitignored, keyed by the lock file's hash, so a new pin is a
new install), under a file lock so concurrent runs and test workers install it once.
`NodePeerProcess` runs `node server.js` with loadtest/node.py's process handling (pinned to the
server CPUs with `--pin`, ready once `/readyz` answers, always stopped).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

from loadtest.node import ServerProcess, running

HERE = Path(__file__).resolve().parent / "socketio_node"
SCRIPT = HERE / "server.js"
ROOT = HERE.parents[2]
INSTALL_SECONDS = 300


class NodeMissing(RuntimeError):
    """node (or, for the first install, npm) is not on PATH."""


def cache_dir() -> Path:
    """Where the pinned packages go: one directory per package-lock.json content."""
    digest = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()[:12]
    return ROOT / ".cache" / f"socketio-node-{digest}"


def install(timeout: float = INSTALL_SECONDS) -> Path:
    """The `node_modules` server.js runs with, installed once by `npm ci` from the lock file.

    The flock serializes concurrent installs (pytest-xdist workers, two benchmark runs); the
    stamp is written only after `npm ci` succeeded, so a killed install is redone, not used.
    """
    if shutil.which("node") is None:
        raise NodeMissing("node not found: the node target needs Node.js 18+ (and npm) on PATH")
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / "installed"
    with (cache.parent / f"{cache.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            if shutil.which("npm") is None:
                raise NodeMissing("npm not found: the node target installs socket.io with npm")
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(HERE / name, cache / name)
            npm = ["npm", "ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"]
            run = subprocess.run(npm, cwd=cache, capture_output=True, text=True, timeout=timeout)
            if run.returncode != 0:
                raise RuntimeError(f"npm ci failed in {cache}:\n{run.stderr[-4000:]}")
            stamp.touch()
    return cache / "node_modules"


def socketio_version(modules: Path) -> str:
    """The socket.io version actually installed (what the report names)."""
    manifest = json.loads((modules / "socket.io" / "package.json").read_text())
    return str(manifest["version"])


class NodePeerProcess(ServerProcess):
    """server.js under `node` as a subprocess, resolving socket.io from `modules`."""

    label = "node-peer"

    def __init__(self, modules: Path, *, port: int | None = None, cpus: set[int] | None = None):
        super().__init__(env={"NODE_PATH": str(modules)}, port=port, cpus=cpus)
        self.modules = modules

    def command(self) -> list[str]:
        return ["node", str(SCRIPT), "--port", str(self.port)]


def node_peer(
    timeout: float = 15.0, cpus: set[int] | None = None
) -> contextlib.AbstractContextManager[NodePeerProcess]:
    """A ready node peer on a free loopback port (installing socket.io first if need be);
    always stopped."""
    return running(NodePeerProcess(install(), cpus=cpus), timeout)
