"""Firebase Cloud Messaging, HTTP v1 API.

`POST {base}/v1/projects/{project}/messages:send` with `Authorization: Bearer <access token>`.
The access token comes from Google's OAuth2 token endpoint in exchange for a JWT signed (RS256)
with the service account's private key (the "service account JWT bearer" grant), and is reused
until shortly before it expires. A 404 `UNREGISTERED` means the app was uninstalled or the
token rotated: the device is forgotten. A 401 drops the cached access token, then retries.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson

from rtt.domain.notification import Delivery, Notification, Outcome, collapse_id

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_SECONDS = 3600  # the longest lifetime Google accepts for the signed assertion
EARLY_SECONDS = 60  # renew the access token this long before it expires
MAX_PAYLOAD = 4000  # FCM refuses messages over 4 KB; past this the item's data is left out


def load_account(path: Path) -> dict[str, Any]:
    """A service account key file, checked for the fields the grant needs."""
    account: dict[str, Any] = json.loads(path.read_text())
    for name in ("client_email", "private_key", "token_uri"):
        if not isinstance(account.get(name), str):
            raise ValueError(f"{path}: service account file has no {name}")
    return account


def data_map(notification: Notification) -> dict[str, str]:
    """FCM data values are strings: the notification's fields, JSON ones encoded."""
    wire = notification.wire()
    out = {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in wire.items()}
    if len(orjson.dumps(out)) > MAX_PAYLOAD:
        out.pop("data", None)
        out.pop("pushExt", None)
        out["truncated"] = "true"
    return out


def fcm_message(notification: Notification, token: str) -> dict[str, Any]:
    """The v1 `message` for one device: visible unless contentAvailable (a silent, data-only
    push), collapsed per profile on Android (`collapse_key`) and iOS (`apns-collapse-id`)."""
    key = collapse_id(notification.app, notification.profile)
    message: dict[str, Any] = {
        "token": token,
        "data": data_map(notification),
        "android": {"collapse_key": key, "priority": "HIGH"},
        "apns": {"headers": {"apns-collapse-id": key}},
    }
    if notification.content_available:
        message["android"]["priority"] = "NORMAL"
        message["apns"]["headers"].update({"apns-push-type": "background", "apns-priority": "5"})
        message["apns"]["payload"] = {"aps": {"content-available": 1}}
    else:
        message["notification"] = {"title": notification.title, "body": notification.body}
    return message


def _error_code(response: httpx.Response) -> str:
    """The FcmError errorCode of an error answer (UNREGISTERED, QUOTA_EXCEEDED, …), or ""."""
    try:
        details = response.json()["error"].get("details", [])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""
    for detail in details if isinstance(details, list) else []:
        if isinstance(detail, dict) and "errorCode" in detail:
            return str(detail["errorCode"])
    return ""


class Fcm:
    """Sends to FCM devices of one Firebase project."""

    def __init__(
        self,
        project_id: str,
        account: dict[str, Any],
        base_url: str,
        token_url: str | None,
        client: httpx.AsyncClient,
        oauth: httpx.AsyncClient,
    ) -> None:
        """`client` carries the sends (HTTP/2), `oauth` the token requests."""
        self._url = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._account = account
        self._token_url = token_url or account["token_uri"]
        self._client = client
        self._oauth = oauth
        self._access: tuple[str, float] | None = None  # (token, monotonic expiry)
        self._lock = asyncio.Lock()

    def assertion(self, now: int) -> str:
        """The signed JWT exchanged for an access token."""
        claims = {
            "iss": self._account["client_email"],
            "scope": SCOPE,
            "aud": self._token_url,
            "iat": now,
            "exp": now + ASSERTION_SECONDS,
        }
        headers = (
            {"kid": self._account["private_key_id"]} if "private_key_id" in self._account else None
        )
        return jwt.encode(claims, self._account["private_key"], algorithm="RS256", headers=headers)

    async def _token(self) -> str:
        """The cached access token, fetched once for all concurrent senders when stale."""
        async with self._lock:
            if self._access is None or time.monotonic() >= self._access[1]:
                response = await self._oauth.post(
                    self._token_url,
                    data={"grant_type": GRANT, "assertion": self.assertion(int(time.time()))},
                )
                response.raise_for_status()
                body = response.json()
                lifetime = float(body.get("expires_in", 3600))
                self._access = (
                    str(body["access_token"]),
                    time.monotonic() + lifetime - EARLY_SECONDS,
                )
            return self._access[0]

    async def send(self, notification: Notification, token: str) -> Outcome:
        try:
            bearer = await self._token()
        except (httpx.HTTPStatusError, ValueError, KeyError, TypeError) as e:
            return Outcome(Delivery.RETRY, f"fcm token endpoint: {e}")
        response = await self._client.post(
            self._url,
            content=orjson.dumps({"message": fcm_message(notification, token)}),
            headers={"authorization": f"Bearer {bearer}", "content-type": "application/json"},
        )
        if response.status_code == 200:
            return Outcome(Delivery.DELIVERED)
        code = _error_code(response)
        if code == "UNREGISTERED":
            return Outcome(Delivery.GONE, "fcm: UNREGISTERED")
        if response.status_code == 401:
            self._access = None
        return Outcome(Delivery.RETRY, f"fcm answered {response.status_code} {code}".rstrip())
