"""The README's load-test command runs as documented: `python -m loadtest.locust_run` starts a
node, runs the locustfile headless for a bounded time, prints locust's table, stops the node,
and every request of the run succeeded (S2S sends, socket CONNECTs, pushed messages)."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.locust_run import seconds

ROOT = Path(__file__).resolve().parents[2]


def test_run_time_is_read_as_locust_reads_it() -> None:
    assert seconds("10s") == 10 and seconds("1m30s") == 90 and seconds("2h") == 7200
    for bad in ("", "10", "ten seconds", "5x"):
        with pytest.raises(ValueError):
            seconds(bad)


@pytest.mark.timeout(120)
def test_a_short_headless_run_prints_the_table_and_fails_nothing(tmp_path: Path) -> None:
    prefix = tmp_path / "run"
    command = [sys.executable, "-m", "loadtest.locust_run", "--users", "10", "--run-time", "3s"]
    run = subprocess.run(
        [*command, "--csv", str(prefix)], cwd=ROOT, capture_output=True, text=True, timeout=100
    )
    assert run.returncode == 0, (run.stdout[-3000:], run.stderr[-3000:])
    table = run.stdout
    for row in ("SYS_SEND_MESSAGE", "rtt/CONNECT", "messaging/INCOMING", "Aggregated"):
        assert row in table, table
    with (tmp_path / "run_stats.csv").open() as f:
        stats = {row["Name"]: row for row in csv.DictReader(f)}
    assert int(stats["Aggregated"]["Failure Count"]) == 0, stats["Aggregated"]
    for name in ("SYS_SEND_MESSAGE", "rtt/CONNECT", "messaging/INCOMING"):
        assert int(stats[name]["Request Count"]) > 0, stats[name]
