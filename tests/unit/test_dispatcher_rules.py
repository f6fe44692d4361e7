"""The client dispatcher's signature and gzip rules, without a server."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from rtt.api.dispatcher import gunzip, signed
from rtt.errors import RttError

pytestmark = pytest.mark.timeout(10)


def md5(body: bytes, secret: str) -> str:
    return hashlib.md5(body + secret.encode()).hexdigest()


def test_signature_is_md5_of_body_then_secret():
    """Fails if the right signature (any hex case) is refused or a wrong one accepted."""
    body = b'{"messages":[]}'
    assert signed("s", md5(body, "s"), body)
    assert signed("s", md5(body, "s").upper(), body)
    assert not signed("s", md5(body, "t"), body)
    assert not signed("s", md5(body + b" ", "s"), body)
    assert not signed("s", None, body)
    assert not signed("s", "", body)


def test_signature_over_either_body_of_a_gzip_packet():
    """Fails if a gzip packet signed over its JSON or over its bytes as sent is refused."""
    body = b'{"a":1}'
    packed = gzip.compress(body)
    assert signed("s", md5(body, "s"), packed, body)
    assert signed("s", md5(packed, "s"), packed, body)


def test_gunzip_bounds():
    """Fails if gunzip inflates past its bound or accepts a broken or trailing stream."""
    assert gunzip(gzip.compress(b"x" * 100), 100) == b"x" * 100
    with pytest.raises(RttError) as too_big:
        gunzip(gzip.compress(b"x" * 101), 100)
    assert too_big.value.reason_code == 40600
    for broken in (b"nope", gzip.compress(b"x")[:-4], gzip.compress(b"x") + b"tail"):
        with pytest.raises(RttError) as bad:
            gunzip(broken, 100)
        assert bad.value.reason_code == 40001
