"""Sign-in rules of the brainCloud client API (authenticationV2/AUTHENTICATE), without I/O.

Only the identity kinds rtt can verify on its own are served: Anonymous (the client's own
random id, nothing to prove) and Universal (an id and a password). A Universal password is kept
as a salted scrypt hash, never as sent; checking one costs ~20 ms of CPU on purpose (a stolen
file does not give the passwords away), so callers run it off the event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import os

ANONYMOUS = "Anonymous"
UNIVERSAL = "Universal"
KINDS = (ANONYMOUS, UNIVERSAL)

_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024, "dklen": 32}
_SALT_BYTES = 16
MAX_PASSWORD = 1024  # characters; scrypt's cost does not depend on it, the body bound does


def hash_password(password: str) -> bytes:
    """salt + scrypt(password, salt)."""
    salt = os.urandom(_SALT_BYTES)
    return salt + hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


def password_matches(password: str, stored: bytes) -> bool:
    """Whether `password` is the one `stored` was hashed from, compared in constant time."""
    salt, expected = stored[:_SALT_BYTES], stored[_SALT_BYTES:]
    actual = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    return hmac.compare_digest(actual, expected)
