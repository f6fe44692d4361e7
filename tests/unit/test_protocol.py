"""Frames are encoded once and spliced per recipient; the result must be valid, equal JSON."""

import orjson
from hypothesis import given
from hypothesis import strategies as st

from rtt.protocol import data_fields, dumps, json_strings, spliced_frame, unsequenced, whole_frame


def test_whole_frame_splices_seq_into_valid_json():
    """A spliced seq must not break the JSON or drop the shared fields."""
    frame = whole_frame("messaging", "INCOMING", {"msgId": "m1", "n": [1, 2]})
    assert orjson.loads(frame.render(42)) == {
        "seq": 42,
        "service": "messaging",
        "operation": "INCOMING",
        "data": {"msgId": "m1", "n": [1, 2]},
    }


def test_spliced_frame_puts_per_recipient_fields_inside_data():
    """Per-recipient fields (evId, toPlayerId) belong to `data`, beside the shared ones."""
    frame = spliced_frame("event", "GET_EVENTS", {"eventType": "t", "eventData": {"a": 1}})
    rendered = frame.render(7, data_fields({"evId": "e1", "toPlayerId": "p1"}))
    assert orjson.loads(rendered) == {
        "seq": 7,
        "service": "event",
        "operation": "GET_EVENTS",
        "data": {"evId": "e1", "toPlayerId": "p1", "eventType": "t", "eventData": {"a": 1}},
    }


def test_seq_zero_renders_a_live_only_frame_without_seq():
    """RTT-only frames stay outside the stream, so they must carry no seq."""
    frame = whole_frame("event", "GET_EVENTS", {"x": 1})
    assert "seq" not in orjson.loads(frame.render(0))


def test_unsequenced_has_no_seq():
    """Replies and control frames are not stream items."""
    assert orjson.loads(unsequenced("rtt", "RESYNC", {"seq": 3})) == {
        "service": "rtt",
        "operation": "RESYNC",
        "data": {"seq": 3},
    }


@given(st.lists(st.text(max_size=12)))
def test_json_strings_is_dumps_of_each_whatever_the_strings_hold(values: list[str]) -> None:
    """Commas, quotes, backslashes, control and non-ASCII characters included."""
    assert json_strings(values) == [dumps(v) for v in values]


def test_json_strings_of_plain_ids_splits_one_encoding() -> None:
    ids = [f"u{i}" for i in range(1000)] + ["é", "\x01"]
    assert json_strings(ids) == [orjson.dumps(v) for v in ids]
