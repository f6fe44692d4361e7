"""Paging queries evaluated in Python over rows read from Redis (which has no query engine).

A row is what a query needs of one item without its content: its filter and sort values and
its size. This costs O(entries in the box) small reads per page, fine for inboxes of thousands;
content is read only for the items of the page. The local engine runs the same queries in SQL.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from rtt.domain.paging import Filter, Query


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


def _sort_key(row: Row, field: str) -> Any:
    return row.values[field]


def run(query: Query, rows: list[Row]) -> tuple[int, list[Row]]:
    """(total matching, the query's window), sorted as the query says, ties by box and id."""
    matching = [r for r in rows if all(_matches(r, f) for f in query.filters)]
    matching.sort(key=lambda r: (r.msgbox, r.msg_id))
    for field, direction in reversed(query.sort):
        matching.sort(key=functools.partial(_sort_key, field=field), reverse=direction < 0)
    return len(matching), matching[query.start : query.start + query.limit]
