"""Token verification reads the `app` claim before verifying: what it must refuse there."""

import base64

import jwt
import orjson
import pytest

from rtt import tokens
from rtt.settings import AppConfig

APPS = {"a": AppConfig(secret="a" * 32), "b": AppConfig(secret="b" * 32)}


def _segment(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    ["", "no-dots", "a.%%%.c", "a." + _segment([1, 2]) + ".c", "a.\u00e9.c", None, 42],
    ids=["empty", "no-dots", "bad-base64", "payload-not-object", "non-ascii", "none", "int"],
)
def test_malformed_tokens_are_refused(token):
    """Fails if a token whose payload cannot name an app gets past the peek."""
    with pytest.raises(tokens.TokenError):
        tokens.verify(token, APPS)


def test_unknown_or_missing_app_is_refused():
    """Fails if a token naming no configured app is verified with some secret anyway."""
    for claims in ({"sub": "p1", "exp": 2**31}, {"sub": "p1", "exp": 2**31, "app": "zz"}):
        with pytest.raises(tokens.TokenError, match="unknown app"):
            tokens.verify(jwt.encode(claims, APPS["a"].secret, algorithm="HS256"), APPS)


def test_payload_swapped_after_signing_is_refused():
    """Fails if a payload naming app b, spliced onto a's signed header, passes with b's secret."""
    token, _ = tokens.mint("a", APPS["a"], "p1", 60)
    header, _, signature = token.split(".")
    swapped = f"{header}.{_segment({'sub': 'p1', 'app': 'b', 'exp': 2**31})}.{signature}"
    with pytest.raises(tokens.TokenError, match="invalid token"):
        tokens.verify(swapped, APPS)
