"""Pure send rules: fromJson, content size, id lists, token bucket, tokens."""

import pytest

from rtt import tokens
from rtt.domain import fields
from rtt.domain.messages import content_bytes, system_sender
from rtt.domain.ratelimit import TokenBucket
from rtt.errors import RttError
from rtt.settings import AppConfig


def _reason(fn, *args, **kwargs):
    with pytest.raises(RttError) as e:
        fn(*args, **kwargs)
    return e.value.reason_code


def test_system_sender_rules():
    """id must be null (40617) and name is required (40618); pic is kept."""
    assert system_sender({"id": None, "name": "Admin", "pic": "u"}) == {
        "id": None,
        "name": "Admin",
        "pic": "u",
    }
    assert system_sender({"name": "Admin"}) == {"id": None, "name": "Admin"}
    assert _reason(system_sender, {"id": "p1", "name": "Admin"}) == 40617
    assert _reason(system_sender, {"id": None}) == 40618
    assert _reason(system_sender, {"id": None, "name": "  "}) == 40618
    assert _reason(system_sender, None) == 40618


def test_content_limit_is_on_serialized_bytes():
    """The limit counts the serialized content, not the number of keys."""
    assert content_bytes({"t": "x" * 10}, 100) == b'{"t":"xxxxxxxxxx"}'
    assert _reason(content_bytes, {"t": "x" * 100}, 100) == 40600
    assert _reason(content_bytes, [1], 100) == 40001


def test_id_list_rules():
    """Missing → 40358, bad entries → 40001, too many recipients → 40621; duplicates fold."""
    assert fields.id_list({"ids": ["a", "b", "a"]}, "ids", max_count=5) == ["a", "b"]
    assert _reason(fields.id_list, {}, "ids", max_count=5) == 40358
    assert _reason(fields.id_list, {"ids": "a"}, "ids", max_count=5) == 40001
    assert _reason(fields.id_list, {"ids": []}, "ids", max_count=5) == 40001
    assert _reason(fields.id_list, {"ids": ["a", 1]}, "ids", max_count=5) == 40001
    assert _reason(fields.id_list, {"ids": ["x" * 129]}, "ids", max_count=5) == 40001
    too_many = {"ids": ["a", "b", "c"]}
    assert _reason(fields.id_list, too_many, "ids", max_count=2, recipients=True) == 40621
    assert _reason(fields.id_list, too_many, "ids", max_count=2) == 40001


def test_token_bucket_allows_rate_then_refills():
    """A burst of `rate` passes, the next is refused, and a second later there is room again."""
    bucket = TokenBucket(3, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) is True
    assert bucket.take(0.5) is False
    assert bucket.take(1.6) is True


def test_tokens_verify_against_their_own_app():
    """A token signed by one app's secret must not pass as another app's."""
    apps = {
        "a": AppConfig(secret="a" * 32),
        "b": AppConfig(secret="b" * 32),
    }
    token, _ = tokens.mint("a", apps["a"], "p1", 60)
    assert tokens.verify(token, apps).profile == "p1"
    forged, _ = tokens.mint("b", apps["a"], "p1", 60)  # claims app b, signed with a's secret
    with pytest.raises(tokens.TokenError):
        tokens.verify(forged, apps)
    expired, _ = tokens.mint("a", apps["a"], "p1", -10)
    with pytest.raises(tokens.TokenError, match="expired"):
        tokens.verify(expired, apps)
    with pytest.raises(tokens.TokenError):
        tokens.verify("not-a-jwt", apps)


def test_recipient_limits_are_bounded_per_send():
    """Fails if a config may allow more recipients per send than the local engine's stream
    refs can address (a target's place in its frame is packed in POSITION_BITS bits)."""
    from pydantic import ValidationError

    from rtt.engines.local.index import POSITION_BITS
    from rtt.settings import MAX_RECIPIENTS_PER_SEND, Limits

    assert MAX_RECIPIENTS_PER_SEND < 1 << POSITION_BITS
    assert Limits(max_recipients_s2s=MAX_RECIPIENTS_PER_SEND).max_recipients_s2s > 0
    for field in ("max_recipients_s2s", "max_recipients_user", "max_recipients_rongcloud"):
        with pytest.raises(ValidationError):
            Limits(**{field: MAX_RECIPIENTS_PER_SEND + 1})
