"""Paging queries evaluated in Python over rows read from Redis (which has no query engine).

A row is what a query needs of one item without its content: its filter and sort values and
its size. A page costs O(entries in the box) small reads, made a chunk at a time (TopRows), so
the event loop and the pool serve others between them; content is read only for the items of
the page. The local engine runs the same queries in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
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
