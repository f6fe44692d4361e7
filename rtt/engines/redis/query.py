"""Paging queries evaluated in Python over entries read from Redis (which has no query engine).

This costs O(entries in the box) per page, fine for inboxes of thousands; the local engine runs
the same queries in SQL.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

from rtt.domain.messages import BoxEntry, Message
from rtt.domain.paging import Filter, Query

T = TypeVar("T", BoxEntry, Message)


def _value(item: BoxEntry | Message, field: str) -> Any:
    message = item.message if isinstance(item, BoxEntry) else item
    if field == "message.from.id":
        return message.from_id
    if field == "message.to":
        return message.to
    if field in ("msgCr", "msgUp"):
        return message.msg_cr if field == "msgCr" else message.msg_up
    assert isinstance(item, BoxEntry)
    return {"msgbox": item.msgbox, "read": item.read, "mbCr": item.mb_cr, "mbUp": item.mb_up}[field]


def _sort_key(item: BoxEntry | Message, field: str) -> Any:
    return _value(item, field)


def _matches(item: BoxEntry | Message, f: Filter) -> bool:
    value = _value(item, f.field)
    if f.op == "in":
        return any(v in value for v in f.value)
    if f.op == "gte":
        return bool(value >= f.value)
    if f.op == "lte":
        return bool(value <= f.value)
    return bool(value == f.value)


def run(query: Query, items: list[T]) -> tuple[int, list[T]]:
    """(total matching, the requested page), sorted as the query says, ties by box and id."""
    matching = [i for i in items if all(_matches(i, f) for f in query.filters)]

    def tiebreak(item: T) -> tuple[str, str]:
        if isinstance(item, BoxEntry):
            return item.msgbox, item.message.msg_id
        return "", item.msg_id

    matching.sort(key=tiebreak)
    for field, direction in reversed(query.sort):
        matching.sort(key=functools.partial(_sort_key, field=field), reverse=direction < 0)
    return len(matching), matching[query.offset : query.offset + query.rows]
