"""POST /dispatcherv2 over real HTTP, on both engines: the signature, sessions and their reason
codes, packets answered once, gzip bodies, bundle bounds, sign-in rules, the X-RTT-SECRET
socket, and one client operation per service through the shared registry."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support.clients import S2S
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for

pytestmark = pytest.mark.timeout(60)

SECRET = "client-secret-0123456789abcdef0123456789"


class Client:
    """A brainCloud client as the library behaves: packets numbered per process."""

    def __init__(self, server: RunningServer, app: str = "demo", secret: str = SECRET) -> None:
        self.http = httpx.AsyncClient(base_url=server.url, timeout=10)
        self.app, self.secret = app, secret
        self.session = ""
        self.packet = 0

    async def post(
        self, body: bytes, sig: str | None = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        sig = sig if sig is not None else hashlib.md5(body + self.secret.encode()).hexdigest()
        return await self.http.post(
            "/dispatcherv2",
            content=body,
            headers={"X-APPID": self.app, "X-SIG": sig, **(headers or {})},
        )

    def packet_bytes(self, *messages: dict[str, Any], packet_id: int | None = None) -> bytes:
        if packet_id is None:
            packet_id, self.packet = self.packet, self.packet + 1
        packet = {
            "messages": list(messages),
            "gameId": self.app,
            "sessionId": self.session,
            "packetId": packet_id,
        }
        return json.dumps(packet).encode()

    async def send(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        r = await self.post(self.packet_bytes(*messages))
        assert r.status_code == 200, r.text
        return r.json()["responses"]

    async def authenticate(self, anonymous_id: str, force: bool = True) -> dict[str, Any]:
        [response] = await self.send(anonymous(anonymous_id, force))
        if response["status"] == 200:
            self.session = response["data"]["sessionId"]
        return response

    async def close(self) -> None:
        await self.http.aclose()


def anonymous(anonymous_id: str, force: bool = True) -> dict[str, Any]:
    data = {"authenticationType": "Anonymous", "anonymousId": anonymous_id, "forceCreate": force}
    return {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": data}


def universal(user: str, password: str, force: bool = True) -> dict[str, Any]:
    data = {
        "authenticationType": "Universal",
        "externalId": user,
        "authenticationToken": password,
        "forceCreate": force,
    }
    return {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": data}


def op(service: str, operation: str, data: Any = None) -> dict[str, Any]:
    return {"service": service, "operation": operation, "data": data or {}}


@pytest.fixture
async def client(server):
    c = Client(server)
    yield c
    await c.close()


async def test_bad_or_missing_signature_reads_nothing(server, client):
    """Fails if a packet with a wrong or missing X-SIG runs, or answers other than 403/40301."""
    body = client.packet_bytes(anonymous("a-1"))
    for sig in ("0" * 32, ""):
        r = await client.post(body, sig=sig)
        assert r.status_code == 403 and r.json()["reason_code"] == 40301, r.text
    other = Client(server, secret="wrong")
    r = await other.post(other.packet_bytes(anonymous("a-1")))
    await other.close()
    assert r.json()["reason_code"] == 40301
    # nothing was created: without forceCreate the identity is still unknown
    assert (await client.authenticate("a-1", force=False))["reason_code"] == 40206


async def test_unknown_app_is_refused(server):
    """Fails if an unknown X-APPID is not refused with 40316."""
    c = Client(server, app="nope")
    r = await c.post(c.packet_bytes(anonymous("a-1")))
    await c.close()
    assert r.status_code == 403 and r.json()["reason_code"] == 40316


async def test_no_session_and_expired_session_codes(server, client):
    """Fails if a call without a session is not 40304, or one with a dead session not 40303
    (the codes on which the client library drops its session and signs in again)."""
    [r] = await client.send(op("messaging", "GET_MESSAGE_COUNTS"))
    assert (r["status"], r["reason_code"]) == (403, 40304)
    client.session = "f" * 32
    [r] = await client.send(op("messaging", "GET_MESSAGE_COUNTS"))
    assert (r["status"], r["reason_code"]) == (403, 40303)


async def test_session_expiry_is_extended_by_each_call(tmp_path: Path):
    """Fails if a session expires while calls keep coming, or outlives its idle period."""
    async with running(settings_for(tmp_path, client_session_seconds=1.0)) as server:
        c = Client(server)
        await c.authenticate("idle")
        for _ in range(4):  # 1.6 s in all, each call well within the 1 s idle period
            await asyncio.sleep(0.4)
            [r] = await c.send(op("heartbeat", "READ"))
            assert r == {"status": 200, "data": None}
        await asyncio.sleep(1.3)
        [r] = await c.send(op("heartbeat", "HEARTBEAT"))
        await c.close()
    assert r["reason_code"] == 40303


async def test_profiles_per_app_are_bounded(tmp_path: Path):
    """Fails if the client API creates more profiles than RTT_ACCOUNTS_MAX_PER_APP, or if a
    refused sign-in creates anything; known identities still sign in at the bound."""
    async with running(settings_for(tmp_path, accounts_max_per_app=2)) as server:
        c = Client(server)
        first = await c.authenticate("one")
        await c.authenticate("two")
        refused = await c.authenticate("three")
        assert (refused["status"], refused["reason_code"]) == (400, 40001), refused
        again = await c.authenticate("one", force=False)
        assert again["data"]["profileId"] == first["data"]["profileId"]
        still = await c.authenticate("three", force=False)
        assert still["reason_code"] == 40206  # the refused one was never created
        await c.close()


async def test_repeated_packet_is_answered_from_cache_and_runs_once(server, client):
    """Fails if a resent packetId runs its operation again or answers differently."""
    await client.authenticate("sender")
    me = (await client.send(op("messaging", "GET_MESSAGE_COUNTS")))[0]
    assert me["status"] == 200
    body = client.packet_bytes(
        op("messaging", "SEND_MESSAGE_SIMPLE", {"toProfileIds": ["friend"], "text": "hi"})
    )
    first = await client.post(body)
    again = await client.post(body)
    assert first.status_code == again.status_code == 200
    assert first.content == again.content
    [counts] = await client.send(op("messaging", "GET_MESSAGE_COUNTS"))
    assert counts["data"]["sent"]["total"] == 1


async def test_resent_sign_in_opens_one_session(server, client):
    """Fails if a resent AUTHENTICATE packet (same bytes) opens a second session."""
    body = client.packet_bytes(anonymous("twice"))
    first = (await client.post(body)).json()["responses"][0]["data"]
    again = (await client.post(body)).json()["responses"][0]["data"]
    assert first["sessionId"] == again["sessionId"]
    assert first["newUser"] == "true"


async def test_gzip_body(server, client):
    """Fails if a gzip packet signed over its JSON (or its bytes as sent) is refused, or a
    broken or oversized gzip body is not refused."""
    body = client.packet_bytes(anonymous("zipped"))
    sig = hashlib.md5(body + SECRET.encode()).hexdigest()
    r = await client.post(gzip.compress(body), sig=sig, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["responses"][0]["status"] == 200
    packed = gzip.compress(client.packet_bytes(anonymous("zipped-2")))
    r = await client.post(packed, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 200 and r.json()["responses"][0]["status"] == 200
    r = await client.post(b"not gzip", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["reason_code"] == 40001
    bomb = gzip.compress(b" " * (2 * 1024 * 1024))
    r = await client.post(bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and r.json()["reason_code"] == 40600


async def test_bundle_bounds(server, client):
    """Fails if a packet with no messages or more than the bound runs."""
    for count in (0, server.settings.dispatcher_max_messages + 1):
        body = client.packet_bytes(*[op("heartbeat", "READ")] * count)
        r = await client.post(body)
        assert r.status_code == 400 and r.json()["reason_code"] == 40001


async def test_universal_sign_in_rules(server, client):
    """Fails if Universal does not create, sign back in, refuse a wrong password (40307) or an
    unknown user without forceCreate (40206)."""
    [created] = await client.send(universal("ann", "pw-1"))
    assert created["data"]["newUser"] == "true"
    [again] = await client.send(universal("ann", "pw-1", force=False))
    assert again["data"]["profileId"] == created["data"]["profileId"]
    [wrong] = await client.send(universal("ann", "pw-2"))
    assert wrong["reason_code"] == 40307
    [unknown] = await client.send(universal("bob", "x", force=False))
    assert (unknown["status"], unknown["reason_code"]) == (202, 40206)


async def test_bundle_signs_in_and_goes_on(server, client):
    """Fails if the messages after an AUTHENTICATE in one bundle do not run in its session."""
    responses = await client.send(
        anonymous("bundled"), op("messaging", "GET_MESSAGE_BOXES"), op("event", "GET_EVENTS")
    )
    assert [r["status"] for r in responses] == [200, 200, 200]
    assert responses[1]["data"] == {"items": ["inbox", "sent"]}


async def test_rtt_secret_socket_on_root_path(server, client):
    """Fails if the X-RTT-SECRET socket on `/` does not connect as the session's profile with
    binary frames, or if the secret opens a second socket."""
    auth = await client.authenticate("socket-user")
    profile = auth["data"]["profileId"]
    [r] = await client.send(op("rttRegistration", "REQUEST_CLIENT_CONNECTION"))
    data = r["data"]
    [endpoint] = data["endpoints"]
    query = "&".join(f"{k}={v}" for k, v in data["auth"].items())
    url = f"ws://{endpoint['host']}:{endpoint['port']}?{query}"
    connect = {
        "service": "rtt",
        "operation": "CONNECT",
        "data": {
            "appId": "demo",
            "profileId": profile,
            "sessionId": client.session,
            "auth": data["auth"],
        },
    }
    async with websockets.connect(url, open_timeout=5) as ws:
        await ws.send(json.dumps(connect))
        reply = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(reply, bytes)  # the library parses binary messages only
        assert json.loads(reply)["operation"] == "CONNECT"
        await S2S(server).ok(
            "messaging",
            "SYS_SEND_MESSAGE_SIMPLE",
            {"toProfileIds": [profile], "text": "hi", "fromJson": {"id": None, "name": "A"}},
        )
        pushed = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert pushed["operation"] == "INCOMING" and pushed["seq"] == 1
    async with websockets.connect(url, open_timeout=5) as ws:
        await ws.send(json.dumps(connect))
        refusal = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert refusal["operation"] == "DISCONNECT" and refusal["data"]["reasonCode"] == 40304
