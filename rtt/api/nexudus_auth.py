"""Who calls the Nexudus door: one of an app's API users (`[apps.X.users]`, API.md §1), by a
bearer token from `POST /api/token` or by HTTP Basic, and what its roles allow.

A token is a JWT (HS256) naming the app and the user, signed with a key derived from the app's
client secret and the user's password. Any node verifies it with nothing stored, and it dies
with its expiry or with a change of the password or the app secret; roles are read from the
config on every request, so removing one takes effect at once. The derived key keeps the two
kinds of token apart: a connection token (signed with the secret itself) is no API token, and
an API token is no connection token.

A username names a user of whichever app has a user of that name with that password (the
`users` of one deployment are told apart by their passwords); `<appId>/<username>` names the
app explicitly. Credentials that fit users of two apps are refused rather than guessed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt

from rtt.settings import ApiUser, AppConfig

ADMIN = "admin"
_KIND = b"rtt nexudus api token"


@dataclass(frozen=True, slots=True)
class ApiCaller:
    """An authenticated API user of an app."""

    app_id: str
    app: AppConfig
    username: str
    user: ApiUser

    def may(self, role: str) -> bool:
        """Whether the user holds `role` (or `admin`, which holds every role)."""
        return ADMIN in self.user.roles or role in self.user.roles


def _key(app: AppConfig, username: str, user: ApiUser) -> bytes:
    digest = hashlib.sha256
    material = _KIND + digest(username.encode()).digest() + digest(user.password.encode()).digest()
    return hmac.new(app.secret.encode(), material, digest).digest()


def _candidates(apps: dict[str, AppConfig], username: str) -> list[tuple[str, str]]:
    """(appId, user name) pairs `username` may name."""
    found = [(app_id, username) for app_id, app in apps.items() if username in app.users]
    app_id, slash, name = username.partition("/")
    if slash and app_id in apps and name in apps[app_id].users:
        found.append((app_id, name))
    return found


def by_password(apps: dict[str, AppConfig], username: str, password: str) -> ApiCaller | None:
    """The one user these credentials fit (passwords compared in constant time), else None."""
    fits = [
        (app_id, name)
        for app_id, name in _candidates(apps, username)
        if hmac.compare_digest(apps[app_id].users[name].password.encode(), password.encode())
    ]
    if len(fits) != 1:
        return None
    app_id, name = fits[0]
    return ApiCaller(app_id, apps[app_id], name, apps[app_id].users[name])


def issue(caller: ApiCaller, ttl_seconds: int) -> str:
    """A bearer token for `caller`, valid for `ttl_seconds`."""
    claims = {"app": caller.app_id, "sub": caller.username, "exp": int(time.time()) + ttl_seconds}
    return jwt.encode(claims, _key(caller.app, caller.username, caller.user), algorithm="HS256")


def _by_token(apps: dict[str, AppConfig], token: str) -> ApiCaller | None:
    try:
        # unverified: only picks the key the token is then verified with
        claimed = jwt.decode(token, options={"verify_signature": False})
        app_id, name = claimed.get("app"), claimed.get("sub")
        app = apps.get(app_id) if isinstance(app_id, str) else None
        user = app.users.get(name) if app is not None and isinstance(name, str) else None
        if app is None or user is None or not isinstance(app_id, str) or not isinstance(name, str):
            return None
        claims = jwt.decode(
            token,
            _key(app, name, user),
            algorithms=["HS256"],
            options={"require": ["exp", "app", "sub"]},
        )
    except jwt.PyJWTError:
        return None
    if claims["app"] != app_id or claims["sub"] != name:
        return None
    return ApiCaller(app_id, app, name, user)


def _by_basic(apps: dict[str, AppConfig], encoded: str) -> ApiCaller | None:
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return by_password(apps, username, password) if colon else None


def by_header(apps: dict[str, AppConfig], authorization: str | None) -> ApiCaller | None:
    """The caller an `Authorization: Bearer …` or `Basic …` header proves, else None."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    credentials = credentials.strip()
    if not credentials:
        return None
    if scheme.lower() == "bearer":
        return _by_token(apps, credentials)
    if scheme.lower() == "basic":
        return _by_basic(apps, credentials)
    return None
