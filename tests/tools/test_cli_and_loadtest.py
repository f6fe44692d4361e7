"""The shipped commands work as documented: `rtt serve` as a process, `rtt token`, benchmarks."""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from loadtest import latency
from loadtest.node import ServerProcess, rtt_node
from loadtest.peers import node_server
from tests.support.server import APPS_TOML

ROOT = Path(__file__).resolve().parents[2]


def test_latency_benchmark_smoke_run_against_rtt_serve_subprocess():
    """`rtt serve --config` starts, serves S2S and the socket; the benchmark keeps working."""
    with rtt_node() as node:
        samples = asyncio.run(latency.measure(node.http, node.ws, 5, 5.0))
    result = latency.report(samples)
    assert result["sends"] == 5
    assert 0 < result["p50_ms"] < 5000


@pytest.mark.timeout(150)
def test_fanout_benchmark_runs_rtt_and_the_socketio_peer_without_loss():
    """`--target both` drives rtt and the python-socketio peer with the same generator; both
    deliver everything exactly once. A smoke run: no performance thresholds."""
    command = [sys.executable, "-m", "loadtest.fanout", "--target", "both"]
    command += ["--sockets", "20", "--recipients", "20", "--messages", "3", "--json"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert report["target"] == "both" and report["pinning"]["applied"] is False
    for side in ("rtt", "peer"):
        result = report[side]
        assert result["deliveries"] == 3 * 20, (side, result)
        assert result["lost"] == 0 and result["gaps"] == 0 and result["duplicates"] == 0, result
    assert report["peer"]["engine"] == "socketio+redis"
    assert set(report["ratio"]) >= {
        "server_cpu_per_delivery_peer_over_rtt",
        "deliveries_per_s_rtt_over_peer",
    }


@pytest.mark.timeout(120)
def test_redis_cost_benchmark_measures_the_store_against_its_floor():
    """`loadtest.redis_cost` sends through the redis engine's store and through the one-ZADD
    floor, each on a redis-server of its own, and reports Redis's CPU per delivery of both."""
    command = [sys.executable, "-m", "loadtest.redis_cost"]
    command += ["--profiles", "200", "--recipients", "100", "--sends", "5"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert (report["recipients"], report["sends"]) == (100, 5)
    cost = report["redis_cpu_us_per_delivery"]
    assert cost["rtt"] > 0 and cost["floor_one_zadd"] > 0
    assert report["rtt_over_floor"] > 0


@pytest.mark.timeout(150)
def test_fanout_benchmark_drives_the_transport_floor_beside_rtt():
    """`--target rtt,floor` drives the picows floor peer with the same generator: it delivers
    everything exactly once and the report divides rtt's figures by the floor's."""
    command = [sys.executable, "-m", "loadtest.fanout", "--target", "rtt,floor"]
    command += ["--sockets", "20", "--recipients", "20", "--messages", "3", "--json"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert "peer" not in report
    for side in ("rtt", "floor"):
        result = report[side]
        assert result["deliveries"] == 3 * 20, (side, result)
        assert result["lost"] == 0 and result["gaps"] == 0 and result["duplicates"] == 0, result
    assert report["floor"]["server"].startswith("picows ")
    assert set(report["ratio"]) >= {
        "server_cpu_per_delivery_floor_over_rtt",
        "deliveries_per_s_rtt_over_floor",
        "p99_ms_floor_over_rtt",
    }


@pytest.mark.timeout(150)
def test_fanout_benchmark_drives_rtt_on_its_own_redis_cluster():
    """`--engine redis-cluster --masters 2` starts a 2-master cluster, runs rtt on it, delivers
    everything exactly once and sums Redis's figures over both masters."""
    command = [sys.executable, "-m", "loadtest.fanout", "--target", "rtt"]
    command += ["--engine", "redis-cluster", "--masters", "2"]
    command += ["--sockets", "20", "--recipients", "20", "--messages", "3", "--json"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout)["rtt"]
    assert result["engine"] == "redis-cluster" and result["redis_masters"] == 2
    assert result["deliveries"] == 3 * 20, result
    assert result["lost"] == 0 and result["gaps"] == 0 and result["duplicates"] == 0, result
    assert result["redis_calls_per_send"]["spublish"] == 1, result  # sharded fan-out


@pytest.mark.timeout(node_server.INSTALL_SECONDS + 150)
def test_fanout_benchmark_drives_socketio_on_node_beside_rtt():
    """`--target rtt,node` drives socket.io on Node.js with the python peer's socket and send:
    it delivers everything exactly once, names the installed socket.io, and the report divides
    rtt's figures by its. Without node/npm the test skips, unless RTT_REQUIRE_NODE is set (as
    `.ci/run` does), where it fails. socket.io is installed first, so its timeout is npm's."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("RTT_REQUIRE_NODE"):
            pytest.fail("node and npm are required for the socket.io-on-Node fan-out peer")
        pytest.skip("node/npm not installed")
    modules = node_server.install()
    command = [sys.executable, "-m", "loadtest.fanout", "--target", "rtt,node"]
    command += ["--sockets", "20", "--recipients", "20", "--messages", "3", "--json"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert "peer" not in report and "floor" not in report
    for side in ("rtt", "node"):
        result = report[side]
        assert result["deliveries"] == 3 * 20, (side, result)
        assert result["lost"] == 0 and result["gaps"] == 0 and result["duplicates"] == 0, result
    node = report["node"]
    assert node["server"] == f"socket.io {node_server.socketio_version(modules)}"
    assert node["engine"] == "socket.io on Node.js, in-memory adapter"
    assert node["redis_cpu_us_per_delivery"] is None  # no Redis: one process, in-memory adapter
    assert set(report["ratio"]) >= {
        "server_cpu_per_delivery_node_over_rtt",
        "deliveries_per_s_rtt_over_node",
        "connects_per_s_rtt_over_node",
    }


def _rtt_token(tmp_path: Path, app: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run `rtt token` for profile p9 against the test apps."""
    config = tmp_path / "apps.toml"
    config.write_text(APPS_TOML)
    command = [sys.executable, "-m", "rtt", "token", "--app", app, "--profile", "p9"]
    return subprocess.run(
        [*command, *extra, "--config", str(config)], capture_output=True, text=True, timeout=30
    )


def test_rtt_token_prints_a_verifiable_token(tmp_path):
    """`rtt token` signs with the app's secret from the config file."""
    result = _rtt_token(tmp_path, "demo", "--ttl", "60")
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(
        result.stdout.strip(), "client-secret-0123456789abcdef0123456789", algorithms=["HS256"]
    )
    assert claims["sub"] == "p9" and claims["app"] == "demo"
    assert 0 < claims["exp"] - time.time() <= 60


def test_rtt_token_refuses_unknown_app(tmp_path):
    """A typo in --app must fail loudly, not print a token nobody accepts."""
    result = _rtt_token(tmp_path, "nope")
    assert result.returncode != 0 and "nope" in result.stderr


def test_a_server_that_never_gets_ready_is_killed_by_the_failed_start(tmp_path: Path):
    """Pins: a start that timed out raised with the process still running, and the caller,
    having no started server to stop, left it behind (a node process outlived its test)."""

    class Stuck(ServerProcess):
        def command(self) -> list[str]:
            return [sys.executable, "-c", "import time; time.sleep(60)"]

    stuck = Stuck(directory=tmp_path)
    with pytest.raises(RuntimeError, match="did not become ready"):
        stuck.start(timeout=0.5)
    assert not stuck.alive()
