"""The system channel's pure rules and the RongCloud signature check, without a server.
Expected signatures are computed here with hashlib, never with rtt's own code."""

from __future__ import annotations

import hashlib
import re

import pytest
from starlette.datastructures import Headers

from rtt.api.rongcloud import Refused, check_signature
from rtt.domain.channel import check_content, new_message_uid, push_text
from rtt.errors import Reason, RttError
from rtt.settings import AppConfig

APPS = {"a": AppConfig(secret="s", app_key="key", app_secret="sec")}
NOW = 1_700_000_000.0


def _headers(nonce: str, stamp: str, secret: str = "sec") -> Headers:
    signature = hashlib.sha1(f"{secret}{nonce}{stamp}".encode()).hexdigest()
    return Headers({"App-Key": "key", "Nonce": nonce, "Timestamp": stamp, "Signature": signature})


def test_a_known_vector_passes_in_seconds_and_milliseconds():
    assert (
        hashlib.sha1(b"sec14314" + b"1700000000").hexdigest()
        == (_headers("14314", "1700000000")["signature"])
    )
    app, key, ttl = check_signature(APPS, _headers("14314", "1700000000"), NOW, 300)
    assert (app, key) == ("a", "14314:1700000000") and 300 < ttl <= 301
    app, _, ttl = check_signature(APPS, _headers("1", "1699999900000"), NOW, 300)
    assert app == "a" and 200 < ttl <= 201  # kept only while the Timestamp is in the window


def test_uppercase_hex_is_the_same_signature():
    headers = _headers("n", "1700000000")
    upper = Headers({**dict(headers), "signature": headers["signature"].upper()})
    assert check_signature(APPS, upper, NOW, 300)[0] == "a"


@pytest.mark.parametrize(
    "headers",
    [
        _headers("n", "1700000301"),
        _headers("n", "1699999699"),
        _headers("n", "1700000000", secret="other"),
        _headers("n" * 19, "1700000000"),
        _headers("n\x7f", "1700000000"),
        _headers("n", "-1700000000"),
        Headers({"App-Key": "key"}),
    ],
)
def test_refusals_are_401_1004(headers):
    with pytest.raises(Refused) as refused:
        check_signature(APPS, headers, NOW, 300)
    assert (refused.value.status, refused.value.code) == (401, 1004)


def test_built_in_types_need_their_json_fields():
    assert check_content("RC:TxtMsg", '{"content":"hi"}', 100) == {"content": "hi"}
    assert check_content("App:Anything", "<not json>", 100) is None
    for message_type, content in [
        ("RC:TxtMsg", '{"content":5}'),
        ("RC:TxtMsg", '"just a string"'),
        ("RC:LBSMsg", '{"content":"c","latitude":"north","longitude":1,"poi":"p"}'),
        ("RC:FileMsg", '{"name":"n","size":true,"type":"t","fileUrl":"u"}'),
        ("RC:Unknown", "{}"),
        ("A" * 33, "x"),
    ]:
        with pytest.raises(RttError) as refused:
            check_content(message_type, content, 1000)
        assert refused.value.reason_code == Reason.INVALID_REQUEST, message_type


def test_content_size_counts_utf8_bytes():
    check_content("App:X", "é" * 50, 100)
    with pytest.raises(RttError) as refused:
        check_content("App:X", "é" * 51, 100)
    assert refused.value.reason_code == Reason.TOO_LARGE


def test_push_text_prefers_push_content_then_text_messages_only():
    assert push_text("RC:TxtMsg", {"content": "x" * 300}, None) == "x" * 200
    assert push_text("RC:TxtMsg", {"content": "x"}, "shown") == "shown"
    assert push_text("App:X", None, None) == ""
    assert push_text("RC:CmdMsg", {"name": "n"}, None) == ""


def test_message_uids_look_like_rongclouds_and_do_not_repeat():
    uids = {new_message_uid() for _ in range(10_000)}
    assert len(uids) == 10_000
    assert all(re.fullmatch(r"[A-Z2-7]{4}(-[A-Z2-7]{4}){3}", u) for u in uids)
