"""Paging queries evaluated in Python over rows read from Redis (which has no query engine).

A row is what a query needs of one item without its content: its filter and sort values and
its size. A box page costs O(entries in the box) small reads, made a chunk at a time (TopRows),
so the event loop and the pool serve others between them; content is read only for the items of
the page. The local engine runs the same queries in SQL.

A Sys page (all the app's messages) reads through the app's message indexes instead
(keys.ORDERS, kept by the send/update/delete scripts): `plan` picks the index of the first sort
field and turns the range filters on that field into a score range. When nothing else is asked
(`exact`), the count is a ZCOUNT and the window a ZRANGE by rank: O(page + log n). Otherwise
(`message.from.id`, `message.to`, a range on the other field, a second sort field) the range is
examined in index order a chunk at a time, at most RTT_SYS_SCAN_MAX entries per request; past that
the count is an upper bound (the matches seen plus every entry not examined), so `moreAfter`
still says more may follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtt.domain.paging import Filter, Query, sort_key


@dataclass(slots=True)
class Row:
    """One candidate item: its message id, box ("" in the Sys view), the values of the fields
    paging criteria name ("mbCr", "message.from.id", …), its size bound and its box state."""

    msg_id: str
    msgbox: str
    values: dict[str, Any]
    size: int
    state: list[Any] | None = None  # [read, mbCr, mbUp, mbVer] of a box entry


def _matches(row: Row, f: Filter) -> bool:
    value = row.values[f.field]
    if f.op == "in":
        return any(v in value for v in f.value)
    if f.op == "gte":
        return bool(value >= f.value)
    if f.op == "lte":
        return bool(value <= f.value)
    return bool(value == f.value)


def matches(query: Query, row: Row) -> bool:
    """Whether the row passes every filter of the query."""
    return all(_matches(row, f) for f in query.filters)


def order(query: Query, row: Row) -> tuple[Any, ...]:
    """The row's place in the query's order: its sort values, then box and id, as in SQL."""
    values = (row.values[field] for field, _ in query.sort)
    return (*sort_key(query, values), row.msgbox, row.msg_id)


SYS_SCAN_MAX = 10_000  # the default of RTT_SYS_SCAN_MAX
"""Index entries one Sys page examines at most when its criteria cannot be answered by the index
alone (`Plan.exact` false): about 80 message_meta calls."""


@dataclass(slots=True)
class Plan:
    """How a Sys query reads: through the index of `sort_field` in `direction`, between scores
    `low` and `high` (None: unbounded), filtering the rest in Python unless `exact`."""

    sort_field: str
    direction: int
    low: int | None = None
    high: int | None = None
    rest: list[Filter] = field(default_factory=list)
    exact: bool = True

    def bounds(self) -> tuple[int | str, int | str]:
        """(min, max) of ZCOUNT / ZRANGEBYSCORE."""
        return ("-inf" if self.low is None else self.low), (
            "+inf" if self.high is None else self.high
        )


def plan(q: Query) -> Plan:
    """The index read of a Sys query (scores are the field, negated in a descending index)."""
    sort_field, direction = q.sort[0]
    p = Plan(sort_field, direction)
    for f in q.filters:
        if f.field != sort_field:
            p.rest.append(f)
            continue
        score = int(f.value) if direction > 0 else -int(f.value)
        if (f.op == "gte") == (direction > 0):
            p.low = score if p.low is None else max(p.low, score)
        else:
            p.high = score if p.high is None else min(p.high, score)
    p.exact = not p.rest and len(q.sort) == 1
    return p
