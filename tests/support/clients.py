"""Real clients for tests: S2S over HTTP, and RTT sockets over WebSocket, every wait bounded."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import orjson
import websockets

from tests.support.server import RunningServer

TIMEOUT = 5.0
SERVER = {"appId": "demo", "serverName": "backend", "serverSecret": "server-secret"}
SECRETS = {
    "demo": "client-secret-0123456789abcdef0123456789",
    "quiet": "quiet-secret-0123456789abcdef0123456789ab",
    "tight": "tight-secret-0123456789abcdef0123456789ab",
}
SERVERS = {
    "demo": "server-secret",
    "quiet": "quiet-server-secret",
    "tight": "tight-server-secret",
}


def sys_send_body(to: list[str], content: dict[str, Any]) -> dict[str, Any]:
    """A stateless S2S `messaging/SYS_SEND_MESSAGE` of the test app's backend, from "Admin"."""
    return {
        **SERVER,
        "service": "messaging",
        "operation": "SYS_SEND_MESSAGE",
        "data": {
            "toProfileIds": to,
            "contentJson": content,
            "fromJson": {"id": None, "name": "Admin"},
        },
    }


def token(profile: str, app: str = "demo", ttl: int = 600, **claims: Any) -> str:
    body = {"sub": profile, "app": app, "exp": int(time.time()) + ttl, **claims}
    return jwt.encode(body, SECRETS[app], algorithm="HS256")


class S2S:
    """Stateless S2S calls; `call` returns (http status, body)."""

    def __init__(self, server: RunningServer, app: str = "demo") -> None:
        self.http = httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT)
        self.app = app

    async def raw(self, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        r = await self.http.post(
            "/s2sdispatcher",
            content=content,
            headers={"content-type": "application/json", **(headers or {})},
        )
        return r.status_code, r.json()

    async def call(
        self, service: str, operation: str, data: Any, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        body = {
            "appId": self.app,
            "serverName": "backend",
            "serverSecret": SERVERS[self.app],
            "service": service,
            "operation": operation,
            "data": data,
        }
        return await self.raw(body, headers)

    async def ok(self, service: str, operation: str, data: Any) -> dict[str, Any]:
        status, body = await self.call(service, operation, data)
        assert status == 200 and body["status"] == 200, body
        return body["data"]

    async def send(self, to: list[str], content: dict[str, Any] | None = None) -> str:
        data = await self.ok(
            "messaging",
            "SYS_SEND_MESSAGE",
            {
                "toProfileIds": to,
                "contentJson": content or {"text": "hello"},
                "fromJson": {"id": None, "name": "App Administrator"},
            },
        )
        return str(data["msgId"])

    async def close(self) -> None:
        await self.http.aclose()


class Rtt:
    """One RTT socket: CONNECT, then frames and requests."""

    def __init__(self, ws: websockets.ClientConnection, connect: dict[str, Any]) -> None:
        self.ws = ws
        self.connect = connect
        self._ids = itertools.count(1)
        self._frames: list[dict[str, Any]] = []

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        if self._frames:
            return self._frames.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        return orjson.loads(raw)

    async def pushed(self, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
        """The next `count` stream frames (those with a seq), in arrival order."""
        out: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(out) < count:
                frame = await self.recv(timeout)
                if "seq" in frame:
                    out.append(frame)
        return out

    async def silent(self, seconds: float = 0.3) -> None:
        """Assert that nothing arrives for a while."""
        with contextlib.suppress(TimeoutError):
            frame = await self.recv(seconds)
            raise AssertionError(f"unexpected frame {frame}")

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, str) else orjson.dumps(frame).decode())

    async def request(self, service: str, operation: str, data: Any = None) -> dict[str, Any]:
        """Send a request and return its reply (stream frames that arrive first are kept)."""
        request_id = next(self._ids)
        await self.send(
            {"service": service, "operation": operation, "data": data, "requestId": request_id}
        )
        kept: list[dict[str, Any]] = []
        async with asyncio.timeout(TIMEOUT):
            while True:
                raw = await self.ws.recv()
                frame = orjson.loads(raw)
                if frame.get("requestId") == request_id:
                    self._frames.extend(kept)
                    return frame
                kept.append(frame)

    async def ok(self, service: str, operation: str, data: Any = None) -> dict[str, Any]:
        reply = await self.request(service, operation, data)
        assert reply["status"] == 200, reply
        return reply["data"]

    async def close(self) -> None:
        await self.ws.close()


async def open_socket(
    server: RunningServer,
    profile: str,
    *,
    app: str = "demo",
    since: int | None = None,
    epoch: str | None = None,
    in_query: bool = True,
    tok: str | None = None,
) -> Rtt:
    """Connect and complete CONNECT; fails the test if the server refuses."""
    tok = tok or token(profile, app)
    url = server.ws_url + (f"?token={tok}" if in_query else "")
    ws = await asyncio.wait_for(websockets.connect(url, max_size=2**22), TIMEOUT)
    data: dict[str, Any] = {
        "appId": app,
        "profileId": profile,
        "auth": {} if in_query else {"token": tok},
    }
    if since is not None:
        data["since"] = since
    if epoch is not None:
        data["epoch"] = epoch
    await ws.send(orjson.dumps({"service": "rtt", "operation": "CONNECT", "data": data}).decode())
    reply = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
    assert reply["operation"] == "CONNECT", reply
    return Rtt(ws, reply["data"])


@contextlib.asynccontextmanager
async def socket(server: RunningServer, profile: str, **kwargs: Any) -> AsyncIterator[Rtt]:
    client = await open_socket(server, profile, **kwargs)
    try:
        yield client
    finally:
        await client.close()
