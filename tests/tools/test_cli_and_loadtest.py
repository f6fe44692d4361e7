"""The shipped commands work as documented: `rtt serve` as a process, `rtt token`, the benchmark."""

import asyncio
import subprocess
import sys

import jwt

from loadtest import latency
from loadtest.node import rtt_node
from tests.support.server import APPS_TOML


def test_latency_benchmark_smoke_run_against_rtt_serve_subprocess():
    """`rtt serve --config` starts, serves S2S and the socket; the benchmark keeps working."""
    with rtt_node() as node:
        samples = asyncio.run(latency.measure(node.http, node.ws, 5, 5.0))
    result = latency.report(samples)
    assert result["sends"] == 5
    assert 0 < result["p50_ms"] < 5000


def test_rtt_token_prints_a_verifiable_token(tmp_path):
    """`rtt token` signs with the app's secret from the config file."""
    config = tmp_path / "apps.toml"
    config.write_text(APPS_TOML)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtt",
            "token",
            "--app",
            "demo",
            "--profile",
            "p9",
            "--ttl",
            "60",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    claims = jwt.decode(out, "client-secret-0123456789abcdef0123456789", algorithms=["HS256"])
    assert claims["sub"] == "p9" and claims["app"] == "demo"


def test_rtt_token_refuses_unknown_app(tmp_path):
    """A typo in --app must fail loudly, not print a token nobody accepts."""
    config = tmp_path / "apps.toml"
    config.write_text(APPS_TOML)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rtt",
            "token",
            "--app",
            "nope",
            "--profile",
            "p9",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0 and "nope" in result.stderr
