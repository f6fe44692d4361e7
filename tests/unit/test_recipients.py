"""Recipient lists longer than a slice are checked and folded exactly as a short one is."""

from __future__ import annotations

import re

from rtt.core.recipients import split_recipients
from rtt.domain import fields
from rtt.domain.messages import new_ids
from rtt.slices import SLICE


async def test_a_long_list_folds_duplicates_across_slices_and_keeps_malformed_entries() -> None:
    raw: list[object] = [f"u{i % (SLICE + 7)}" for i in range(3 * SLICE)]
    raw[5], raw[SLICE + 3], raw[-1] = 17, "", "x" * (fields.MAX_ID_LENGTH + 1)
    assert await split_recipients(raw) == fields.split_ids(raw)
    valid, malformed = await split_recipients(raw)
    assert len(valid) == len(set(valid)) == SLICE + 7  # each id once, first seen first
    assert valid[:6] == ["u0", "u1", "u2", "u3", "u4", "u6"]
    assert malformed == [17, "", "x" * (fields.MAX_ID_LENGTH + 1)]


def test_new_ids_are_distinct_32_hex_digits() -> None:
    ids = new_ids(10_000)
    assert len(ids) == len(set(ids)) == 10_000
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert new_ids(0) == []
