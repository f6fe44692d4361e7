"""Paging contexts: whitelisted criteria, opaque cursors that cannot smuggle anything else in."""

import base64

import orjson
import pytest

from rtt.domain.paging import (
    decode_after,
    decode_context,
    encode_after,
    fitting,
    page_result,
    parse_context,
)
from rtt.errors import RttError


def _context(query, count=100, returned=None):
    """The cursor handed back with a page of `returned` items (the whole page by default)."""
    items = ["x"] * (query.limit if returned is None else returned)
    return page_result(query, count, items)["context"]


def _reason(fn, *args):
    with pytest.raises(RttError) as e:
        fn(*args)
    return e.value.reason_code


def test_defaults_are_first_page_of_ten_newest_first():
    """An empty context must still page, newest first."""
    query = parse_context("box", {})
    assert (query.page, query.rows, query.sort) == (1, 10, (("mbCr", -1),))


def test_supported_criteria_parse():
    """Every criterion API.md §5 lists is accepted on the box scope."""
    query = parse_context(
        "box",
        {
            "pagination": {"rowsPerPage": 5, "pageNumber": 2},
            "searchCriteria": {
                "msgbox": "inbox",
                "read": False,
                "message.from.id": None,
                "message.to": {"$in": ["p1"]},
                "mbCr": {"$gte": 1, "$lte": 2},
            },
            "sortCriteria": {"mbUp": 1},
        },
    )
    assert (query.start, query.limit) == (5, 5)
    assert {(f.field, f.op) for f in query.filters} == {
        ("msgbox", "eq"),
        ("read", "eq"),
        ("message.from.id", "eq"),
        ("message.to", "in"),
        ("mbCr", "gte"),
        ("mbCr", "lte"),
    }


@pytest.mark.parametrize(
    "criteria",
    [
        {"message.content.text": "x"},
        {"mbCr": {"$ne": 1}},
        {"read": "yes"},
        {"msgbox": "trash"},
        {"message.to": {"$in": []}},
        {"message.to": "p1"},
    ],
)
def test_unsupported_criteria_answer_40384(criteria):
    """Anything outside the whitelist is refused, never silently ignored."""
    assert _reason(parse_context, "box", {"searchCriteria": criteria}) == 40384


def test_sys_scope_refuses_box_fields():
    """The Sys view has no box state: msgbox/read criteria make no sense there."""
    assert _reason(parse_context, "sys", {"searchCriteria": {"read": True}}) == 40384


@pytest.mark.parametrize(
    "context",
    [[], {"pagination": []}, {"pagination": {"rowsPerPage": 0}}, {"pagination": {"pageNumber": 0}}],
)
def test_malformed_context_answers_40383(context):
    """Pagination that cannot be honoured is a bad context."""
    assert _reason(parse_context, "box", context) == 40383


def test_cursor_round_trip_and_offset():
    """The opaque cursor carries the whole query; pageOffset moves from its page."""
    query = parse_context("box", {"searchCriteria": {"read": True}})
    moved = decode_context("box", _context(query), 2)
    assert moved.page == 3 and moved.filters == query.filters
    assert (moved.start, moved.limit, moved.backward) == (20, 10, False)
    assert _reason(decode_context, "box", _context(query), -1) == 40383


def test_a_cut_page_continues_right_after_its_last_item_and_before_its_first():
    """Pins: a page cut at the byte budget (3 of 10 rows) must not make +1 skip the 7 rows
    that did not fit, nor -1 return rows the caller already has."""
    first = parse_context("box", {"pagination": {"rowsPerPage": 10}})
    after = decode_context("box", _context(first, returned=3), 1)
    assert (after.start, after.limit, after.page, after.backward) == (3, 10, 2, False)
    back = decode_context("box", _context(after, returned=2), -1)
    assert (back.start, back.limit, back.page, back.backward) == (0, 3, 1, True)
    # a backward window cut by the budget keeps the rows nearest the page it came from
    assert back.pick([100, 100, 100], 250) == slice(1, 3)
    result = page_result(back, 100, ["b", "c"])
    assert result["results"]["moreBefore"] is True and result["results"]["page"] == 1
    again = decode_context("box", result["context"], -1)
    assert (again.start, again.limit) == (0, 1)
    assert decode_context("box", result["context"], 1).start == 3
    same = decode_context("box", result["context"], 0)
    assert (same.start, same.limit, same.backward) == (1, 10, False)


def test_page_offset_far_beyond_is_refused_not_overflowing():
    """Pins: a huge pageOffset answers 40383 instead of an integer overflow in the engine."""
    query = parse_context("box", {})
    assert _reason(decode_context, "box", _context(query), 10**12) == 40383
    assert _reason(decode_context, "box", _context(query), -(10**12)) == 40383


def test_fitting_always_keeps_one_and_stops_at_the_budget():
    """Pins: a reply holds items while their sizes fit, and at least one so readers progress."""
    assert fitting([10, 10, 10], 25) == 2
    assert fitting([10, 10, 10], 30) == 3
    assert fitting([500], 100) == 1
    assert fitting([], 100) == 0


def test_after_cursor_round_trip_and_forgeries():
    """An `after` cursor gives back its key; another scope's or a wrong shape is 40383."""
    opaque = encode_after("events", [5, "e1"])
    assert decode_after("events", opaque, (int, str)) == [5, "e1"]
    for bad in (
        encode_after("push", [5, "e1"]),
        encode_after("events", ["5", "e1"]),
        encode_after("events", [2**63, "e1"]),
        encode_after("events", [5, ""]),
        "not a cursor",
        7,
    ):
        assert _reason(decode_after, "events", bad, (int, str)) == 40383


@pytest.mark.parametrize("opaque", ["", "not base64 !!", "e30", 5])
def test_bad_cursor_answers_40383(opaque):
    """A cursor we did not hand out is refused."""
    assert _reason(decode_context, "box", opaque, 0) == 40383


def test_forged_cursor_cannot_bypass_whitelist_or_scope():
    """Editing the cursor must not reach fields or scopes the caller could not ask for."""
    query = parse_context("box", {})
    forged = {
        "scope": "box",
        "filters": [["message.content", "eq", "x"]],
        "sort": [["mbCr", -1]],
        "page": 1,
        "rows": 10,
        "start": 0,
        "length": 10,
    }
    raw = base64.urlsafe_b64encode(orjson.dumps(forged)).decode()
    assert _reason(decode_context, "box", raw, 0) == 40383
    assert _reason(decode_context, "sys", _context(query), 0) == 40383


def test_page_result_flags():
    """moreAfter/moreBefore must reflect the position in the whole result."""
    query = parse_context("box", {"pagination": {"rowsPerPage": 2, "pageNumber": 2}})
    results = page_result(query, 5, ["a", "b"])["results"]
    assert results == {
        "count": 5,
        "page": 2,
        "items": ["a", "b"],
        "moreAfter": True,
        "moreBefore": True,
    }


def test_a_page_cut_short_says_more_after():
    """Pins: a page of 1 item out of 10 rows, when 5 match, says moreAfter (the budget cut it)."""
    query = parse_context("box", {"pagination": {"rowsPerPage": 10}})
    results = page_result(query, 5, ["a"])["results"]
    assert results["moreAfter"] is True and results["moreBefore"] is False
