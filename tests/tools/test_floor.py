"""`python -m loadtest.floor` keeps working: it is the yardstick BENCHMARKS.md compares with."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_kernel_floor_benchmark_smoke_run():
    """A tiny run reports a positive CPU cost per send for every frame it wrote."""
    command = [sys.executable, "-m", "loadtest.floor", "--sockets", "20", "--rounds", "5"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=50)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout)
    assert report["sockets"] == 20 and report["rounds"] == 5
    assert report["cpu_us_per_send"] > 0 and report["sends_per_s"] > 0
