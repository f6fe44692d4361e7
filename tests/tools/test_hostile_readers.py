"""The hostile-readers benchmark runs as documented and reports what it claims to measure."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(90)
def test_hostile_readers_benchmark_smoke_run():
    """`python -m loadtest.hostile_readers` starts its own node, attacks it with readers that
    never read, and reports idle and loaded send latency side by side. A smoke run: no
    performance thresholds, only that every reader was served and no send failed."""
    command = [sys.executable, "-m", "loadtest.hostile_readers"]
    command += ["--readers", "20", "--messages", "5", "--sends", "10", "--timeout", "10"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=80)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert report["engine"] == "local" and report["readers"] == 20
    assert report["readers_served"] == 20 and report["failed_sends"] == 0
    assert report["idle"]["sends"] == 10 and report["under_attack"]["sends"] >= 10
    assert set(report["ratio"]) == {"p50", "p99"}
    assert set(report["rss_mb"]) == {"before", "peak", "while_readers_open", "after_readers_closed"}
