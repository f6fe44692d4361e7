"""The providers of every app with a `[apps.X.push]` section, built once per dispatcher.

Webhooks (and FCM's OAuth2 endpoint) get HTTP/1.1; FCM and APNs get HTTP/2, a client per base
URL. An `http://` base URL (tests' fakes) is spoken as HTTP/2 with prior knowledge (h2c);
`https://` negotiates h2 through ALPN, as Apple's servers require and Google's offer.
"""

from __future__ import annotations

import httpx

from rtt.domain.notification import WEBHOOK
from rtt.push.apns import Apns
from rtt.push.fcm import Fcm, load_account
from rtt.push.webhook import Webhook
from rtt.settings import Settings


class Providers:
    """app id → destination kind (`webhook`, `fcm`, `apns`) → its provider."""

    def __init__(self, settings: Settings) -> None:
        timeout = httpx.Timeout(settings.push_timeout_seconds)
        limits = httpx.Limits(
            max_connections=settings.push_concurrency,
            max_keepalive_connections=settings.push_concurrency,
        )
        self._clients: list[httpx.AsyncClient] = []
        # HTTP/1.1 to webhooks (and FCM's OAuth2 endpoint); HTTP/2 to FCM and APNs, one
        # client per base URL: many concurrent streams on one connection instead of a pool
        # (httpcore scans every connection of a pool for each request it queues)
        http1 = self._client(timeout=timeout, limits=limits)
        http2: dict[str, httpx.AsyncClient] = {}

        def multiplexed(base: str) -> httpx.AsyncClient:
            if base not in http2:
                plain = base.startswith("http://")
                http2[base] = self._client(
                    timeout=timeout, limits=limits, http2=True, http1=not plain
                )
            return http2[base]

        self.apps: dict[str, dict[str, Webhook | Fcm | Apns]] = {}
        for app_id, app in settings.apps.items():
            push = app.push
            if push is None:
                continue
            senders: dict[str, Webhook | Fcm | Apns] = {}
            if push.webhook_url and push.webhook_secret:
                senders[WEBHOOK] = Webhook(push.webhook_url, push.webhook_secret, http1)
            if push.fcm_project_id and push.fcm_service_account_file:
                account = load_account(push.fcm_service_account_file)
                senders["fcm"] = Fcm(
                    push.fcm_project_id,
                    account,
                    push.fcm_base_url,
                    push.fcm_token_url,
                    multiplexed(push.fcm_base_url),
                    http1,
                )
            if push.apns_topic and push.apns_team_id and push.apns_key_id and push.apns_key_file:
                senders["apns"] = Apns(
                    push.apns_topic,
                    push.apns_team_id,
                    push.apns_key_id,
                    push.apns_key_file,
                    push.apns_base_url,
                    multiplexed(push.apns_base_url),
                )
            self.apps[app_id] = senders

    def _client(self, **options: object) -> httpx.AsyncClient:
        client = httpx.AsyncClient(**options)  # type: ignore[arg-type]
        self._clients.append(client)
        return client

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()
