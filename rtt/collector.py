"""The garbage collector tuned for a server that keeps large long-lived indexes in memory.

CPython's default runs a young-generation pass every 700 allocations. A large send keeps its
per-recipient lists alive across many turns of the event loop (it works in slices), so those
passes promote them to the oldest generation, which then sets off full collections over every
object the node holds: the local engine's stream and box indexes alone are three objects per
profile. Measured with three 100 000-recipient sends: six full collections of up to 113 ms,
each a pause for every socket on the node. With a young generation of YOUNG objects a send's
short-lived work dies young, and what start-up built is frozen out of every collection.
"""

from __future__ import annotations

import gc

YOUNG = 50_000  # allocations between young-generation passes (CPython's default is 700)
MIDDLE = 20  # young passes per middle-generation pass (default 10)
OLD = 100  # middle passes per full collection, at the most (default 10)


def tune() -> None:
    """Call once, when the process has loaded what it keeps for its whole life."""
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, OLD)
