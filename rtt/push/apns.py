"""Apple Push Notification service, over HTTP/2 with token-based (ES256 JWT) authentication.

`POST {base}/3/device/<token>` with `authorization: bearer <JWT {iss: team id, iat}, kid: key
id>` (reused for up to 50 minutes: Apple refuses tokens older than an hour and throttles ones
renewed more often than every 20), `apns-topic`, `apns-push-type`, `apns-priority` and
`apns-collapse-id` (one per profile). 410 `Unregistered` forgets the device; 403
`ExpiredProviderToken` renews the JWT; anything else but 200 is retried.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson

from rtt.domain.notification import Delivery, Notification, Outcome, collapse_id

TOKEN_SECONDS = 50 * 60
MAX_PAYLOAD = 4096  # APNs refuses larger payloads (413); past it the item's data is left out


def apns_payload(notification: Notification) -> bytes:
    """`aps` (an alert, or content-available for a silent push, with the count as badge-free
    custom data) plus the notification's fields under `rtt`."""
    if notification.content_available:
        aps: dict[str, Any] = {"content-available": 1}
    else:
        aps = {
            "alert": {"title": notification.title, "body": notification.body},
            "sound": "default",
        }
    custom = notification.wire()
    body = orjson.dumps({"aps": aps, "rtt": custom})
    if len(body) > MAX_PAYLOAD:
        custom.pop("data", None)
        custom.pop("pushExt", None)
        custom["truncated"] = True
        body = orjson.dumps({"aps": aps, "rtt": custom})
    return body


class Apns:
    """Sends to the iOS devices of one app (topic)."""

    def __init__(
        self,
        topic: str,
        team_id: str,
        key_id: str,
        key_file: Path,
        base_url: str,
        client: httpx.AsyncClient,
    ) -> None:
        self._topic = topic
        self._team_id = team_id
        self._key_id = key_id
        self._key = key_file.read_text()
        self._base = base_url.rstrip("/")
        self._client = client
        self._jwt: tuple[str, float] | None = None  # (token, monotonic expiry)

    def provider_token(self) -> str:
        if self._jwt is None or time.monotonic() >= self._jwt[1]:
            token = jwt.encode(
                {"iss": self._team_id, "iat": int(time.time())},
                self._key,
                algorithm="ES256",
                headers={"kid": self._key_id},
            )
            self._jwt = (token, time.monotonic() + TOKEN_SECONDS)
        return self._jwt[0]

    async def send(self, notification: Notification, token: str) -> Outcome:
        silent = notification.content_available
        headers = {
            "authorization": f"bearer {self.provider_token()}",
            "apns-topic": self._topic,
            "apns-push-type": "background" if silent else "alert",
            "apns-priority": "5" if silent else "10",
            "apns-collapse-id": collapse_id(notification.app, notification.profile),
        }
        response = await self._client.post(
            f"{self._base}/3/device/{token}", content=apns_payload(notification), headers=headers
        )
        if response.status_code == 200:
            return Outcome(Delivery.DELIVERED)
        try:
            reason = str(response.json().get("reason", ""))
        except (ValueError, AttributeError):
            reason = ""
        if response.status_code == 410:
            return Outcome(Delivery.GONE, f"apns: 410 {reason}")
        if reason == "ExpiredProviderToken":
            self._jwt = None
        return Outcome(Delivery.RETRY, f"apns answered {response.status_code} {reason}".rstrip())
