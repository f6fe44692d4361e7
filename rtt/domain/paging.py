"""Paging contexts (API.md §5): parse the caller's criteria once, hand back an opaque cursor.

A context is validated against a whitelist of fields per scope (a profile's boxes, or the Sys
view of all messages), so engines only ever see filters they know how to run.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from rtt.errors import Reason, RttError
from rtt.protocol import dumps, loads

MAX_ROWS_PER_PAGE = 100


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    op: str  # "eq" | "in" | "gte" | "lte"
    value: Any


@dataclass(frozen=True, slots=True)
class Query:
    scope: str  # "box" (a profile's entries) | "sys" (all messages of the app)
    filters: tuple[Filter, ...]
    sort: tuple[tuple[str, int], ...]
    page: int
    rows: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.rows


# field → the operators allowed on it, per scope
_FIELDS: dict[str, dict[str, frozenset[str]]] = {
    "box": {
        "msgbox": frozenset({"eq"}),
        "read": frozenset({"eq"}),
        "message.from.id": frozenset({"eq"}),
        "message.to": frozenset({"in"}),
        "mbCr": frozenset({"gte", "lte"}),
        "mbUp": frozenset({"gte", "lte"}),
    },
    "sys": {
        "message.from.id": frozenset({"eq"}),
        "message.to": frozenset({"in"}),
        "msgCr": frozenset({"gte", "lte"}),
        "msgUp": frozenset({"gte", "lte"}),
    },
}
_SORTABLE = {"box": ("mbCr", "mbUp", "msgCr", "msgUp"), "sys": ("msgCr", "msgUp")}


def _criteria_error(message: str) -> RttError:
    return RttError(400, Reason.BAD_CRITERIA, message)


def _context_error(message: str) -> RttError:
    return RttError(400, Reason.BAD_CONTEXT, message)


def _check_value(field: str, op: str, value: Any) -> None:
    ok: bool
    if op == "in":
        ok = (
            isinstance(value, list)
            and 0 < len(value) <= 100
            and all(isinstance(v, str) for v in value)
        )
    elif field == "read":
        ok = isinstance(value, bool)
    elif field == "msgbox":
        ok = value in ("inbox", "sent")
    elif field == "message.from.id":
        ok = value is None or isinstance(value, str)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if not ok:
        raise _criteria_error(f"bad value for {field}")


def _filters(scope: str, criteria: object) -> tuple[Filter, ...]:
    if criteria is None:
        return ()
    if not isinstance(criteria, dict):
        raise _criteria_error("searchCriteria must be an object")
    allowed = _FIELDS[scope]
    out: list[Filter] = []
    for field, condition in criteria.items():
        if field not in allowed:
            raise _criteria_error(f"searchCriteria on {field!r} is not supported")
        if isinstance(condition, dict):
            if not condition:
                raise _criteria_error(f"empty condition on {field}")
            for key, value in condition.items():
                op = key.removeprefix("$")
                if not key.startswith("$") or op not in allowed[field]:
                    raise _criteria_error(f"operator {key!r} is not supported on {field}")
                _check_value(field, op, value)
                out.append(Filter(field, op, value))
        else:
            if "eq" not in allowed[field]:
                raise _criteria_error(f"{field} needs an operator")
            _check_value(field, "eq", condition)
            out.append(Filter(field, "eq", condition))
    return tuple(out)


def _sort(scope: str, criteria: object) -> tuple[tuple[str, int], ...]:
    if criteria is None:
        criteria = {}
    if not isinstance(criteria, dict):
        raise _criteria_error("sortCriteria must be an object")
    out: list[tuple[str, int]] = []
    for field, direction in criteria.items():
        if field not in _SORTABLE[scope] or direction not in (1, -1):
            raise _criteria_error(f"cannot sort on {field!r} {direction!r}")
        out.append((field, int(direction)))
    return tuple(out) or ((_SORTABLE[scope][0], -1),)


def parse_context(scope: str, context: object) -> Query:
    """A caller's context object → a validated query (40383 malformed, 40384 bad criteria)."""
    if not isinstance(context, dict):
        raise _context_error("context must be an object")
    pagination = context.get("pagination", {})
    if not isinstance(pagination, dict):
        raise _context_error("pagination must be an object")
    rows = pagination.get("rowsPerPage", 10)
    page = pagination.get("pageNumber", 1)
    for name, value, high in (
        ("rowsPerPage", rows, MAX_ROWS_PER_PAGE),
        ("pageNumber", page, 10**9),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
            raise _context_error(f"pagination.{name} must be an integer from 1 to {high}")
    return Query(
        scope,
        _filters(scope, context.get("searchCriteria")),
        _sort(scope, context.get("sortCriteria")),
        page,
        rows,
    )


def encode_context(query: Query) -> str:
    """The opaque cursor handed back to the caller."""
    raw = {
        "scope": query.scope,
        "filters": [[f.field, f.op, f.value] for f in query.filters],
        "sort": [list(s) for s in query.sort],
        "page": query.page,
        "rows": query.rows,
    }
    return base64.urlsafe_b64encode(dumps(raw)).decode().rstrip("=")


def decode_context(scope: str, opaque: object, page_offset: object) -> Query:
    """An opaque cursor plus a ±page offset → the query for that page (40383 if it is not ours)."""
    if not isinstance(opaque, str) or not opaque or len(opaque) > 16384:
        raise _context_error("context must be the opaque string of a previous page")
    if isinstance(page_offset, bool) or not isinstance(page_offset, int):
        raise RttError(400, Reason.INVALID_REQUEST, "pageOffset must be an integer")
    try:
        raw = loads(base64.urlsafe_b64decode(opaque + "=" * (-len(opaque) % 4)))
        query = Query(
            raw["scope"],
            tuple(Filter(f[0], f[1], f[2]) for f in raw["filters"]),
            tuple((s[0], s[1]) for s in raw["sort"]),
            raw["page"],
            raw["rows"],
        )
        # re-validate everything, so a forged cursor is no way around the whitelist
        criteria_ok = query.scope == scope and all(
            f.field in _FIELDS[scope] and f.op in _FIELDS[scope][f.field] for f in query.filters
        )
        for f in query.filters:
            _check_value(f.field, f.op, f.value)
        _sort(scope, dict(query.sort))
    except (ValueError, TypeError, KeyError, IndexError, binascii.Error, RttError) as e:
        raise _context_error("malformed context") from e
    if not criteria_ok or not isinstance(query.page, int) or not isinstance(query.rows, int):
        raise _context_error("malformed context")
    if not 1 <= query.rows <= MAX_ROWS_PER_PAGE:
        raise _context_error("malformed context")
    page = query.page + page_offset
    if page < 1:
        raise _context_error("pageOffset goes before the first page")
    return Query(query.scope, query.filters, query.sort, page, query.rows)


def page_result(query: Query, count: int, items: list[Any]) -> dict[str, Any]:
    """The response shape shared by every paging operation."""
    return {
        "context": encode_context(query),
        "results": {
            "count": count,
            "page": query.page,
            "items": items,
            "moreAfter": query.offset + len(items) < count,
            "moreBefore": query.page > 1,
        },
    }
