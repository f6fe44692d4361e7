"""The interpreter tuning of a node process (rtt/interpreter.py), in a fresh interpreter each."""

from __future__ import annotations

import subprocess
import sys

# Imports the whole app after `tune` (as a node does when uvicorn starts it), then counts what
# the collector would have to walk in a full collection.
SCRIPT = """
import gc
from rtt import interpreter
{tune}
import rtt.app  # the modules a node imports after tune, as uvicorn starts it
{started}
print(len(gc.get_objects()))
"""


def _collectable(tune: bool, started: bool) -> int:
    code = SCRIPT.format(
        tune="interpreter.tune()" if tune else "",
        started="interpreter.started()" if started else "",
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return int(out.stdout.split()[-1])


def test_what_start_up_built_is_frozen_once_the_node_has_started() -> None:
    """Pins: only what existed at `tune` was frozen, so the ~50 000 objects of the modules and
    engine built after it were walked by the first full collection, a 20 ms pause during the
    first sends. After `started` only a handful are left to collect."""
    before = _collectable(tune=True, started=False)
    after = _collectable(tune=True, started=True)
    assert before > 10_000, before  # the app's modules really were built after tune
    assert after < before // 20, (before, after)


def test_started_freezes_nothing_in_a_process_that_was_not_tuned() -> None:
    """A node inside a test process must not freeze the test's garbage for good."""
    assert _collectable(tune=False, started=True) > 10_000
