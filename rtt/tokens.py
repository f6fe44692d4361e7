"""Connection tokens: HS256 JWTs signed with the app's client secret (API.md §1).

Backends mint them with any JWT library; rtt verifies the signature with the secret of the app
named in the `app` claim, so one node serves many tenants without a token registry. Whoever
minted it, a token whose subject is a system identity of the app is refused.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import jwt
import orjson

from rtt.domain.identities import is_system_identity
from rtt.settings import AppConfig


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a verified token speaks for."""

    app: str
    profile: str
    name: str | None
    expires_at: int


class TokenError(Exception):
    """The token is missing, malformed, expired, or signed with the wrong secret."""


def mint(app: str, app_config: AppConfig, profile: str, ttl_seconds: int) -> tuple[str, int]:
    """Sign a token for `profile`; returns it with its expiry in epoch seconds. A system
    identity of the app is not a profile: no token is minted for one (TokenError)."""
    if is_system_identity(profile, app_config.system_identities):
        raise TokenError(f"{profile!r} is a system identity of the app, not a profile")
    expires_at = int(time.time()) + ttl_seconds
    claims = {"sub": profile, "app": app, "exp": expires_at}
    return jwt.encode(claims, app_config.secret, algorithm="HS256"), expires_at


def _claimed_app(token: str) -> object:
    """The `app` claim, read without verifying anything: it only picks the secret PyJWT then
    verifies the token with. A PyJWT decode would parse the header and payload a second time."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as e:  # binascii.Error is a ValueError
        raise TokenError("malformed token") from e
    return claims.get("app") if isinstance(claims, dict) else None


def verify(token: object, apps: dict[str, AppConfig]) -> Identity:
    """Check signature and expiry against the secret of the token's own app."""
    if not isinstance(token, str) or not token:
        raise TokenError("missing token")
    app = _claimed_app(token)
    config = apps.get(app) if isinstance(app, str) else None
    if config is None:
        raise TokenError("unknown app")
    try:
        claims = jwt.decode(
            token, config.secret, algorithms=["HS256"], options={"require": ["sub", "exp"]}
        )
    except jwt.ExpiredSignatureError as e:
        raise TokenError("token expired") from e
    except jwt.PyJWTError as e:
        raise TokenError("invalid token") from e
    if claims.get("app") != app:  # the peek and PyJWT must agree on whose token this is
        raise TokenError("invalid token")
    profile = claims["sub"]
    if not isinstance(profile, str) or not profile:
        raise TokenError("invalid subject")
    if is_system_identity(profile, config.system_identities):  # a token minted elsewhere
        raise TokenError("a system identity cannot connect")
    name = claims.get("name")
    return Identity(str(app), profile, name if isinstance(name, str) else None, int(claims["exp"]))
