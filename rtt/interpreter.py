"""The interpreter tuned for a server whose event loop shares the GIL and keeps large indexes.

The garbage collector: CPython's default runs a young-generation pass every 700 allocations.
A large send keeps its per-recipient lists alive across many turns of the event loop (it works
in slices), so those passes promote them to the oldest generation, which then sets off full
collections over every object the node holds, each a pause for every socket on the node
(measured with three 100 000-recipient sends: six full collections of up to 113 ms). With a
young generation of YOUNG objects a send's short-lived work dies young, and what start-up
built is frozen out of every collection. A young pass walks up to YOUNG objects (and what
young lists hold): during three 100 000-recipient sends the longest took 6.5-7.4 ms at 50 000
and 2.9-3.5 ms at 10 000, with no change in deliveries/s or CPU per delivery on the fan-out
benchmark; a middle pass still comes once per YOUNG * MIDDLE = 1 000 000 allocations.

The GIL: the local engine's database thread does Python work per recipient of a send (seqs,
index entries); the event loop, waking for a socket, waits for the GIL until that thread is
asked to let go, every SWITCH_SECONDS (CPython's default is 5 ms). At 1 ms a heartbeat's round
trip during such a send waits a fifth as long, at no measurable cost when the loop is alone.
"""

from __future__ import annotations

import gc
import sys

YOUNG = 10_000  # allocations between young-generation passes (CPython's default is 700)
MIDDLE = 100  # young passes per middle-generation pass (default 10)
OLD = 100  # middle passes per full collection, at the most (default 10)
SWITCH_SECONDS = 0.001  # how long a thread may hold the GIL while another waits (default 5 ms)


_tuned = False


def tune() -> None:
    """Call once, in a node's own process (`rtt serve` and its workers), before it serves."""
    global _tuned
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
    sys.setswitchinterval(SWITCH_SECONDS)
    _tuned = True


def started() -> None:
    """Called when the node has started: what start-up built after `tune` (the engine, the
    modules it imported) is frozen too. Left in the collected generations, those ~50 000
    objects made the first full collection a 20 ms pause, in the middle of the first sends.
    A no-op where `tune` was not called (a node inside a test process: freezing there would
    keep every test's garbage for good)."""
    if _tuned:
        gc.collect()
        gc.freeze()
