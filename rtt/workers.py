"""`rtt serve --workers N`: N node processes on one port, kept running by a small supervisor.

Why processes: a node is one event loop on one core (the GIL). On the redis engine nodes share
nothing but Redis, so N of them on one machine use N cores. Each worker listens on a socket of
its own bound with SO_REUSEPORT to the same address; the kernel spreads new connections over
the listening workers (by a hash of the client's address and port) and sends none to a worker
whose socket has closed.

Each worker is a whole node: its own presence id, broker subscription, hub, push dispatcher and
/metrics. The supervisor does nothing else. It forks the workers once the settings are read (so
every worker serves the same apps and, without --config, the same demo secrets); it turns
SIGTERM or SIGINT into SIGTERM for every worker, each of which then shuts down as a single node
does (DISCONNECT 50302 and close 1012 to its sockets, within RTT_SHUTDOWN_SECONDS); and it forks
a new worker in place of one that exits by itself. A worker that keeps dying (more than
RTT_WORKER_RESTARTS_MAX deaths within RTT_WORKER_RESTART_WINDOW_SECONDS) has a fault no restart
fixes: the supervisor then stops the others and exits 1, saying so.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
import traceback
from collections import deque
from typing import Any

import uvicorn

from rtt import interpreter
from rtt.app import server_config
from rtt.settings import Settings

SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
STOP_MARGIN_SECONDS = 5.0  # after RTT_SHUTDOWN_SECONDS: the lifespan's end (engine closing)
PR_SET_PDEATHSIG = 1  # linux/prctl.h
STARTUP_FAILURE = 3  # uvicorn's exit code when the app does not start


def _say(message: str) -> None:
    print(f"rtt: {message}", file=sys.stderr, flush=True)


def listener(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket on host:port that other processes may bind too (SO_REUSEPORT)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _die_with(supervisor: int) -> None:
    """Ask the kernel for SIGTERM when the supervisor dies (even by SIGKILL), so that no worker
    keeps serving the port unsupervised."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != supervisor:  # it died before the request was made
        os._exit(1)


def _serve(settings: Settings, log_config: dict[str, Any], supervisor: int) -> int:
    """One worker's life: a whole node on its own SO_REUSEPORT socket."""
    os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the supervisor alone, which forwards it
    _die_with(supervisor)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    config = server_config(settings, log_config=log_config)
    sock = listener(settings.host, settings.port, config.backlog)
    server = uvicorn.Server(config)
    interpreter.tune()
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE


def _spawn(settings: Settings, log_config: dict[str, Any]) -> int:
    """Fork a worker; in the child, serve and never return."""
    supervisor = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        code = _serve(settings, log_config, supervisor)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # a worker's last word, whatever it was
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _reap() -> list[tuple[int, int]]:
    """Every child that has ended since the last look: (pid, wait status)."""
    ended: list[tuple[int, int]] = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended.append((pid, status))


def _stop(workers: dict[int, int], grace: float) -> bool:
    """SIGTERM every worker and wait up to `grace` seconds for all; SIGKILL whoever is left.
    True if every worker ended by itself."""
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while workers:
        for pid, _ in _reap():
            workers.pop(pid, None)
        left = deadline - time.monotonic()
        if not workers or left <= 0:
            break
        signal.sigtimedwait({signal.SIGCHLD}, left)  # another SIGTERM/SIGINT changes nothing
    hung = list(workers)
    for pid in hung:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if hung:
        _say(f"workers {hung} did not stop within {grace:g} s and were killed")
    return not hung


def supervise(settings: Settings, log_config: dict[str, Any]) -> int:
    """Run `settings.workers` workers until SIGTERM/SIGINT (exit code 0) or until they die too
    often (exit code 1)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)  # taken one at a time by sigwaitinfo
    grace = settings.shutdown_seconds + STOP_MARGIN_SECONDS
    workers = {_spawn(settings, log_config): slot for slot in range(settings.workers)}
    _say(
        f"supervisor {os.getpid()} serving {settings.host}:{settings.port} with"
        f" {settings.workers} workers (pids {sorted(workers)})"
    )
    deaths: deque[float] = deque()
    while True:
        caught = signal.sigwaitinfo(SIGNALS).si_signo
        if caught != signal.SIGCHLD:
            _say(f"{signal.Signals(caught).name}: stopping {len(workers)} workers")
            return 0 if _stop(workers, grace) else 1
        for pid, status in _reap():
            slot = workers.pop(pid, None)
            if slot is None:
                continue
            now = time.monotonic()
            deaths.append(now)
            while deaths[0] < now - settings.worker_restart_window_seconds:
                deaths.popleft()
            if len(deaths) > settings.worker_restarts_max:
                _say(
                    f"worker {slot} (pid {pid}) {_how(status)}: {len(deaths)} worker deaths"
                    f" within {settings.worker_restart_window_seconds:g} s, more than"
                    f" RTT_WORKER_RESTARTS_MAX={settings.worker_restarts_max}; giving up"
                )
                _stop(workers, grace)
                return 1
            new = _spawn(settings, log_config)
            workers[new] = slot
            _say(f"worker {slot} (pid {pid}) {_how(status)}; restarted it as pid {new}")
