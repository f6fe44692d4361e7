"""Paging contexts: whitelisted criteria, opaque cursors that cannot smuggle anything else in."""

import base64

import orjson
import pytest

from rtt.domain.paging import decode_context, encode_context, page_result, parse_context
from rtt.errors import RttError


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
    assert query.offset == 5
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
    moved = decode_context("box", encode_context(query), 2)
    assert moved.page == 3 and moved.filters == query.filters
    assert _reason(decode_context, "box", encode_context(query), -1) == 40383


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
    }
    raw = base64.urlsafe_b64encode(orjson.dumps(forged)).decode()
    assert _reason(decode_context, "box", raw, 0) == 40383
    assert _reason(decode_context, "sys", encode_context(query), 0) == 40383


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
