"""The app's webhook: one signed POST per notification (API.md §11).

`X-Rtt-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` lets the receiver
check the body came from rtt and is recent (compare `t` with its clock); `X-Rtt-Notification-Id`
is stable across retries of the same notification, so a receiver can drop the duplicates
at-least-once delivery allows. Any 2xx is delivered; anything else is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import httpx
import orjson

from rtt.domain.notification import Delivery, Notification, Outcome


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Rtt-Signature header value for `body` sent at `timestamp` (unix seconds)."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class Webhook:
    """POSTs notifications to one URL."""

    def __init__(self, url: str, secret: str, client: httpx.AsyncClient) -> None:
        self._url = url
        self._secret = secret
        self._client = client

    async def send(self, notification: Notification, token: str) -> Outcome:
        body = orjson.dumps(notification.wire())
        headers = {
            "content-type": "application/json",
            "x-rtt-signature": signature(self._secret, int(time.time()), body),
            "x-rtt-notification-id": notification.key,
        }
        response = await self._client.post(self._url, content=body, headers=headers)
        if 200 <= response.status_code < 300:
            return Outcome(Delivery.DELIVERED)
        return Outcome(Delivery.RETRY, f"webhook answered {response.status_code}")
