"""Locust load for rtt: S2S senders and connected sockets, against a running node.

    locust -f loadtest/locustfile.py --headless -u 100 -r 20 -t 60s --host http://127.0.0.1:8080

`S2SUser` posts `messaging/SYS_SEND_MESSAGE` to /s2sdispatcher (the stateless S2S form) to
RTT_RECIPIENTS random profiles out of RTT_PROFILES, each send carrying its timestamp `t` (ns).
`SocketUser` connects to /rtt as one of those profiles with a JWT signed with
RTT_CLIENT_SECRET, sends CONNECT, heartbeats every heartbeatSeconds, and reports every frame it
receives as a locust request (type `WS`): a pushed message with its publish→receive latency as
the response time, anything else (CONNECT, HEARTBEAT replies) with 0. `frames` counts per user.

Environment (defaults: the bench app of loadtest/node.py): RTT_APP, RTT_SERVER,
RTT_SERVER_SECRET, RTT_CLIENT_SECRET, RTT_PROFILES (100), RTT_RECIPIENTS (10).
Locust runs on gevent, so the socket side is blocking `websocket-client` in a greenlet (locust
monkey-patches sockets), not asyncio. Needs the `load` extra: pip install -e '.[load]'.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from typing import Any

import gevent
import jwt
import websocket
from locust import HttpUser, User, between, task

try:
    from loadtest.node import APP, SECRET, SERVER_SECRET
except ImportError:  # locust puts this file's directory on sys.path, not the repository's
    from node import APP, SECRET, SERVER_SECRET  # type: ignore[no-redef,import-not-found]

RTT_APP = os.environ.get("RTT_APP", APP)
RTT_SERVER = os.environ.get("RTT_SERVER", "backend")
RTT_SERVER_SECRET = os.environ.get("RTT_SERVER_SECRET", SERVER_SECRET)
RTT_CLIENT_SECRET = os.environ.get("RTT_CLIENT_SECRET", SECRET)
PROFILES = max(1, int(os.environ.get("RTT_PROFILES", "100")))
RECIPIENTS = max(1, min(int(os.environ.get("RTT_RECIPIENTS", "10")), PROFILES, 1000))

_next_profile = itertools.count()


def profile_id(i: int) -> str:
    return f"locust-{i % PROFILES}"


class S2SUser(HttpUser):
    """A backend sending system messages, one request at a time."""

    weight = 1
    wait_time = between(0.1, 0.5)

    @task
    def send(self) -> None:
        body = {
            "appId": RTT_APP,
            "serverName": RTT_SERVER,
            "serverSecret": RTT_SERVER_SECRET,
            "service": "messaging",
            "operation": "SYS_SEND_MESSAGE",
            "data": {
                "toProfileIds": [profile_id(i) for i in random.sample(range(PROFILES), RECIPIENTS)],
                "contentJson": {"t": time.time_ns()},
                "fromJson": {"id": None, "name": "locust"},
            },
        }
        with self.client.post(
            "/s2sdispatcher", json=body, name="SYS_SEND_MESSAGE", catch_response=True
        ) as response:
            status = response.json().get("status") if response.status_code == 200 else None
            if status != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")


class SocketUser(User):
    """One connected profile: CONNECT, heartbeats, and every received frame reported."""

    weight = 10

    def on_start(self) -> None:
        self.profile = profile_id(next(_next_profile))
        self.frames = 0
        self.heartbeat_seconds = 30.0
        claims = {"sub": self.profile, "app": RTT_APP, "exp": int(time.time()) + 24 * 3600}
        token = jwt.encode(claims, RTT_CLIENT_SECRET, algorithm="HS256")
        url = (self.host or "").replace("http", "ws", 1).rstrip("/") + f"/rtt?token={token}"
        started = time.perf_counter()
        try:
            self.ws = websocket.create_connection(url, timeout=10, enable_multithread=True)
            self.ws.send(json.dumps({"service": "rtt", "operation": "CONNECT", "data": {}}))
            reply = json.loads(self.ws.recv())
            self.heartbeat_seconds = float(reply["data"]["heartbeatSeconds"])
            self.ws.settimeout(None)  # the reader waits as long as the socket is quiet
        except Exception as e:
            self._report("rtt/CONNECT", (time.perf_counter() - started) * 1000, 0, e)
            raise
        self._report("rtt/CONNECT", (time.perf_counter() - started) * 1000, len(str(reply)))
        self.reader = gevent.spawn(self._read)

    def _report(
        self, name: str, ms: float, length: int, exception: Exception | None = None
    ) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=ms,
            response_length=length,
            exception=exception,
            context={"profile": self.profile},
        )

    def _read(self) -> None:
        while True:
            try:
                raw = self.ws.recv()
            except websocket.WebSocketConnectionClosedException as e:
                self._report("closed", 0, 0, e)
                return
            now = time.time_ns()
            self.frames += 1
            frame: dict[str, Any] = json.loads(raw)
            name = f"{frame.get('service')}/{frame.get('operation')}"
            content = ((frame.get("data") or {}).get("message") or {}).get("content") or {}
            sent = content.get("t") if isinstance(content, dict) else None
            latency = (now - sent) / 1e6 if isinstance(sent, int) else 0.0
            self._report(name, latency, len(raw))

    def wait_time(self) -> float:
        return self.heartbeat_seconds

    @task
    def heartbeat(self) -> None:
        self.ws.send(json.dumps({"service": "rtt", "operation": "HEARTBEAT", "data": {}}))

    def on_stop(self) -> None:
        reader = getattr(self, "reader", None)
        if reader is not None:
            reader.kill(block=False)
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
