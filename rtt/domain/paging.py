"""Paging contexts (API.md §5): parse the caller's criteria once, hand back an opaque cursor; and
the byte budget every reply of many items is cut at.

A context is validated against a whitelist of fields per scope (a profile's boxes, or the Sys
view of all messages), so engines only ever see filters they know how to run.

A page is a window of the sorted result, cut at the reply budget (always at least one item, so
a reader always progresses). The cursor remembers where the page it came with starts and how
many items it held, so moving from it never skips or repeats an item however the page was cut:
+1 starts right after its last item, -1 ends right before its first (cut from the far end).
"""

from __future__ import annotations

import base64
import binascii
import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rtt.errors import Reason, RttError
from rtt.protocol import dumps, loads

R = TypeVar("R")

MAX_ROWS_PER_PAGE = 100
MAX_PAGE = 10**9
MAX_CURSOR = 16384
ITEM_OVERHEAD = 512
"""Bytes counted per item for its keys, punctuation, numbers and generated ids; engines add the
serialized sizes of its variable parts, so a cut never lets items exceed the budget."""


def item_bytes(*parts: int) -> int:
    """An upper bound of one item's JSON size, from the sizes of its variable parts (content,
    sender, recipients, strings as serialized)."""
    return ITEM_OVERHEAD + sum(parts)


def fitting(sizes: Iterable[int], budget: int) -> int:
    """How many leading items of these sizes fit in `budget` bytes: at least one (if any), so a
    reader always progresses, even past one item larger than the budget."""
    total = count = 0
    for size in sizes:
        total += size
        if count and total > budget:
            break
        count += 1
    return count


def fetch_for(budget: int) -> int:
    """How many items to look at to fill `budget` and know whether more follow: every item
    counts at least ITEM_OVERHEAD bytes."""
    return budget // ITEM_OVERHEAD + 2


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    op: str  # "eq" | "in" | "gte" | "lte"
    value: Any


@dataclass(frozen=True, slots=True)
class Query:
    """A window of the sorted result: `limit` items from index `start`. A window read backwards
    (`backward`: the page before a cursor's) keeps its last items when the budget cuts it."""

    scope: str  # "box" (a profile's entries) | "sys" (all messages of the app)
    filters: tuple[Filter, ...]
    sort: tuple[tuple[str, int], ...]
    rows: int  # rowsPerPage: a page's size before any cut
    page: int  # the page number reported: pages moved through, 1 at the first item
    start: int
    limit: int
    backward: bool = False

    def pick(self, sizes: list[int], budget: int) -> slice:
        """Which of the window's items (of these sizes, in order) the reply holds."""
        if self.backward:
            kept = fitting(reversed(sizes), budget)
            return slice(len(sizes) - kept, len(sizes))
        return slice(0, fitting(sizes, budget))


def sort_key(query: Query, values: Iterable[int]) -> tuple[int, ...]:
    """A row's place in the query's order as far as its sort values (the integers of the fields
    of `query.sort`, in that order) decide it; engines append their tiebreak (box, msgId)."""
    return tuple(-v if d < 0 else v for v, (_, d) in zip(values, query.sort, strict=True))


class TopRows(Generic[R]):
    """A query's window found chunk by chunk: the first `start + limit` rows in the query's
    order among the rows added so far, and how many matched. A big box is then read in short
    steps that let other work (sends) run between them, never in one long read."""

    def __init__(self, query: Query, key: Callable[[R], Any]) -> None:
        self.count = 0
        self._start, self._need = query.start, query.start + query.limit
        self._key = key
        self._rows: list[tuple[Any, R]] = []

    def add(self, rows: list[R], matched: int | None = None) -> None:
        """Rows of one chunk that match the filters (`matched` of them if only the chunk's best
        are given). Each step costs O(its rows + the window), so none of them is long."""
        self.count += len(rows) if matched is None else matched
        chunk = sorted(((self._key(row), row) for row in rows), key=_first)
        merged = heapq.merge(self._rows, chunk, key=_first)
        self._rows = list(itertools.islice(merged, self._need))

    @property
    def window(self) -> list[R]:
        return [row for _, row in self._rows[self._start :]]


def _first(pair: tuple[Any, Any]) -> Any:
    return pair[0]


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


def _integer(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


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
        ("pageNumber", page, MAX_PAGE),
    ):
        if not _integer(value, 1, high):
            raise _context_error(f"pagination.{name} must be an integer from 1 to {high}")
    return Query(
        scope,
        _filters(scope, context.get("searchCriteria")),
        _sort(scope, context.get("sortCriteria")),
        rows,
        page,
        start=(page - 1) * rows,
        limit=rows,
    )


def _b64(raw: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(dumps(raw)).decode().rstrip("=")


def _unb64(opaque: object) -> Any:
    """The JSON inside a cursor we handed out (ValueError, binascii.Error if it is not one)."""
    if not isinstance(opaque, str) or not opaque or len(opaque) > MAX_CURSOR:
        raise ValueError("not a cursor")
    return loads(base64.urlsafe_b64decode(opaque + "=" * (-len(opaque) % 4)))


def encode_context(query: Query, first: int, returned: int) -> str:
    """The opaque cursor of a page of `returned` items from index `first`."""
    return _b64(
        {
            "scope": query.scope,
            "filters": [[f.field, f.op, f.value] for f in query.filters],
            "sort": [list(s) for s in query.sort],
            "rows": query.rows,
            "page": query.page,
            "start": first,
            "length": returned,
        }
    )


def decode_context(scope: str, opaque: object, page_offset: object) -> Query:
    """An opaque cursor plus a ±page offset → the window to read (40383 if it is not ours).

    +N starts right after the cursor's last item, skipping N-1 pages of rowsPerPage; -N ends
    right before its first item (less N-1 pages); 0 reads again from its first item."""
    if isinstance(page_offset, bool) or not isinstance(page_offset, int):
        raise RttError(400, Reason.INVALID_REQUEST, "pageOffset must be an integer")
    try:
        raw = _unb64(opaque)
        filters = tuple(Filter(f[0], f[1], f[2]) for f in raw["filters"])
        sort = tuple((s[0], s[1]) for s in raw["sort"])
        rows, page = raw["rows"], raw["page"]
        # a cursor from before pages were cut names a whole page by its number
        start = raw.get("start", (page - 1) * rows if _integer(page, 1, MAX_PAGE) else -1)
        length = raw.get("length", rows)
        # re-validate everything, so a forged cursor is no way around the whitelist
        criteria_ok = raw["scope"] == scope and all(
            f.field in _FIELDS[scope] and f.op in _FIELDS[scope][f.field] for f in filters
        )
        for f in filters:
            _check_value(f.field, f.op, f.value)
        _sort(scope, dict(sort))
    except (ValueError, TypeError, KeyError, IndexError, binascii.Error, RttError) as e:
        raise _context_error("malformed context") from e
    if not (
        criteria_ok
        and _integer(rows, 1, MAX_ROWS_PER_PAGE)
        and _integer(page, 1, MAX_PAGE)
        and _integer(start, 0, MAX_PAGE * MAX_ROWS_PER_PAGE)
        and _integer(length, 0, rows)
    ):
        raise _context_error("malformed context")
    if not -MAX_PAGE <= page_offset <= MAX_PAGE or page + page_offset > MAX_PAGE:
        raise _context_error(f"pageOffset goes beyond page {MAX_PAGE}")
    if page_offset >= 0:
        if page_offset > 0:
            start += length + (page_offset - 1) * rows
        return Query(scope, filters, sort, rows, page + page_offset, start, rows)
    end = start + (page_offset + 1) * rows
    if end <= 0:
        raise _context_error("pageOffset goes before the first page")
    first = max(0, end - rows)
    page = 1 if first == 0 else max(2, page + page_offset)
    return Query(scope, filters, sort, rows, page, first, end - first, backward=True)


def page_result(query: Query, count: int, items: list[Any]) -> dict[str, Any]:
    """The response shape shared by every paging operation; `count` is the total matching."""
    end = max(query.start, min(query.start + query.limit, count))
    first = end - len(items) if query.backward else query.start
    return {
        "context": encode_context(query, first, len(items)),
        "results": {
            "count": count,
            "page": query.page,
            "items": items,
            "moreAfter": first + len(items) < count,
            "moreBefore": first > 0,
        },
    }


# --- replies that are not pages: cut short, they say so and continue after their last item ---


def cut_short(reply: dict[str, Any], more: bool, context: str | None = None) -> dict[str, Any]:
    """A reply of many items as cut at the budget: unchanged if nothing was left out, else with
    `moreAfter: true` and, if given, the context that continues it."""
    if more:
        reply["moreAfter"] = True
        if context is not None:
            reply["context"] = context
    return reply


def encode_after(scope: str, key: list[Any]) -> str:
    """The opaque cursor that continues a cut reply right after the item whose sort key is
    `key` (e.g. an event's [createdAt, evId])."""
    return _b64({"scope": scope, "after": key})


def _key_part(part: object, kind: type) -> bool:
    """A sort key part as engines can compare it: a 64-bit integer or a short string."""
    if kind is int:
        return _integer(part, 0, 2**63 - 1)
    return isinstance(part, str) and 0 < len(part) <= 256


def decode_after(scope: str, opaque: object, shape: tuple[type, ...]) -> list[Any]:
    """The sort key inside a cursor of `scope` whose parts have the types of `shape` (40383)."""
    try:
        raw = _unb64(opaque)
        key = raw["after"]
        ok = (
            raw["scope"] == scope
            and isinstance(key, list)
            and len(key) == len(shape)
            and all(_key_part(part, kind) for part, kind in zip(key, shape, strict=True))
        )
    except (ValueError, TypeError, KeyError, binascii.Error) as e:
        raise _context_error("malformed context") from e
    if not ok:
        raise _context_error("malformed context")
    return list(key)
