"""Notification content rules and provider payloads, with no I/O."""

from __future__ import annotations

import orjson

from rtt.domain.notification import backoff, collapse, collapse_id, dedupe_key
from rtt.domain.push import PushEntry
from rtt.push.apns import MAX_PAYLOAD, apns_payload
from rtt.push.fcm import data_map, fcm_message
from rtt.push.webhook import signature


def entry(ref: str, at: int, data: dict[str, object] | None = None, **kw: object) -> PushEntry:
    values = {"kind": "message", "title": "T", "body": f"b-{ref}", "push_id": ref}
    values.update(kw)
    return PushEntry(
        "p1", str(values["kind"]), ref, str(values["title"]), str(values["body"]),
        orjson.dumps(data or {"msgId": ref}), at, str(values["push_id"]),
    )  # fmt: skip


def test_webhook_signature_is_the_documented_hmac() -> None:
    # computed with openssl: printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec
    v1 = "7d44587dddbaf4c7f70fef20f48cd594834ffea1641e3ac227b84408298738af"
    assert signature("whsec", 1700000000, b"{}") == f"t=1700000000,v1={v1}"


def test_collapse_takes_the_newest_and_counts_the_burst() -> None:
    n = collapse("demo", [entry("a", 1), entry("b", 3), entry("c", 2)])
    assert (n.id, n.body, n.count) == ("b", "b-b", 3)
    assert n.wire()["count"] == 3
    assert "count" not in collapse("demo", [entry("a", 1)]).wire()


def test_system_entries_lift_push_ext_and_content_available() -> None:
    data = {"messageUID": "U", "pushData": "x", "pushExt": {"title": "S"}, "contentAvailable": 1}
    n = collapse("demo", [entry("m", 1, data, kind="system")])
    wire = n.wire()
    assert wire["pushExt"] == {"title": "S"} and wire["contentAvailable"] is True
    assert wire["data"] == {"messageUID": "U", "pushData": "x"}
    message = fcm_message(n, "tok")
    assert "notification" not in message and message["android"]["priority"] == "NORMAL"
    assert all(isinstance(v, str) for v in message["data"].values())


def test_dedupe_keys_name_item_and_destination() -> None:
    a, retried = entry("m1", 1), entry("m1", 1, push_id="99")  # the same item, another entry
    assert dedupe_key(a, "webhook") == dedupe_key(retried, "webhook")
    assert dedupe_key(a, "webhook") != dedupe_key(a, "fcm:t")
    assert dedupe_key(a, "webhook") != dedupe_key(entry("m2", 1), "webhook")
    assert len(collapse_id("demo", "x" * 128).encode()) <= 64  # apns-collapse-id limit


def test_backoff_doubles_with_equal_jitter_and_a_cap() -> None:
    for attempt in range(1, 12):
        delay = min(300.0, 2.0 ** (attempt - 1))
        for _ in range(20):
            assert delay / 2 <= backoff(attempt, 1.0, 300.0) <= delay


def test_large_data_is_left_out_of_device_payloads() -> None:
    n = collapse("demo", [entry("m", 1, {"blob": "x" * 10_000})])
    assert len(apns_payload(n)) <= MAX_PAYLOAD
    assert orjson.loads(apns_payload(n))["rtt"]["truncated"] is True
    assert data_map(n)["truncated"] == "true" and "data" not in data_map(n)
