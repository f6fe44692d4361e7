"""Local stand-ins for the push services, on loopback, checking requests as the real ones do.

- webhook (HTTP/1.1): `X-Rtt-Signature: t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
  recomputed over the raw body, `t` within 5 minutes; else 401.
- FCM HTTP v1 (sends over HTTP/2, h2c as below; its OAuth2 endpoint on HTTP/1.1): the token
  endpoint takes the service-account JWT bearer grant
  (form `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`, `assertion` = RS256 JWT
  verified with the account's public key: iss, scope, aud = the token URL, exp ≤ iat + 1 h) and
  issues access tokens; `POST /v1/projects/<id>/messages:send` needs a live one (else 401
  UNAUTHENTICATED) and a `message` with a token, string-only `data`, and `android.collapse_key`.
- APNs (HTTP/2 with prior knowledge, h2c: no TLS on loopback): `POST /3/device/<token>` with a
  provider JWT (ES256, `kid` = key id, `iss` = team id, iat within the hour), `apns-topic`,
  `apns-push-type`, `apns-collapse-id` ≤ 64 bytes, a JSON body ≤ 4 KB with `aps`.

Each device token behaves as the test says (`tokens[token] = "ok" | "gone" | "fail" | "hold"`):
"gone" answers what means uninstalled (FCM 404 UNREGISTERED, APNs 410 Unregistered), "fail" a
500, "hold" keeps the request open until the test releases it, then answers 503. `delivered`
lists what was answered 200, `refused` what failed a check (a test asserts it is empty).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import jwt
import orjson
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.server import APPS_TOML, free_port

GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
WEBHOOK_SECRET = "whsec-test"
PROJECT = "rtt-test-project"
TEAM, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.example.rtt"
CLIENT_EMAIL = "rtt@rtt-test-project.iam.gserviceaccount.com"


@dataclass
class Keys:
    """A service account (RSA) and an APNs auth key (EC P-256), written where rtt reads them."""

    account_file: Path
    apns_key_file: Path
    rsa_public: Any
    ec_public: Any


def make_keys(directory: Path, token_url: str) -> Keys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    account = {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "kid-1",
        "private_key": pem,
        "client_email": CLIENT_EMAIL,
        "token_uri": token_url,
    }
    account_file = directory / "service-account.json"
    account_file.write_text(json.dumps(account))
    apns_key_file = directory / "AuthKey.p8"
    apns_key_file.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Keys(account_file, apns_key_file, rsa_key.public_key(), ec_key.public_key())


@dataclass
class Fakes:
    """What the fake services saw; shared by the HTTP/1.1 and HTTP/2 servers."""

    keys: Keys | None = None
    token_url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)  # device token → behaviour
    webhook_mode: str = "ok"
    access_seconds: int = 3600
    access_tokens: dict[str, float] = field(default_factory=dict)  # issued → expiry
    token_requests: int = 0
    delivered: list[tuple[str, Any]] = field(default_factory=list)  # (destination, body)
    attempts: list[tuple[str, float]] = field(default_factory=list)  # (destination, when)
    refused: list[str] = field(default_factory=list)
    held: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def to(self, destination: str) -> list[Any]:
        return [body for d, body in self.delivered if d == destination]

    def refuse(self, why: str) -> None:
        self.refused.append(why)

    async def behave(self, destination: str, mode: str) -> str:
        self.attempts.append((destination, time.monotonic()))
        if mode == "hold":
            self.held += 1
            await self.release.wait()
            return "fail"
        return mode

    # --- webhook ------------------------------------------------------------------------

    async def webhook(self, request: Request) -> Response:
        raw = await request.body()
        header = request.headers.get("x-rtt-signature", "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        t = parts.get("t", "")
        expected = hmac.new(
            WEBHOOK_SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256
        ).hexdigest()
        if not t.isdigit() or abs(time.time() - int(t)) > 300:
            self.refuse(f"webhook: bad t in {header!r}")
            return Response(status_code=401)
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            self.refuse(f"webhook: bad signature {header!r}")
            return Response(status_code=401)
        if request.headers.get("content-type") != "application/json":
            self.refuse("webhook: content-type")
        body = orjson.loads(raw)
        mode = await self.behave("webhook", self.webhook_mode)
        if mode != "ok":
            return Response(status_code=503)
        self.delivered.append(("webhook", body))
        return Response(status_code=204)

    # --- FCM ----------------------------------------------------------------------------

    async def fcm_token(self, request: Request) -> Response:
        self.token_requests += 1
        form = parse_qs((await request.body()).decode())
        assert self.keys is not None
        try:
            if form.get("grant_type") != [GRANT]:
                raise ValueError(f"grant_type {form.get('grant_type')}")
            claims = jwt.decode(
                form["assertion"][0],
                self.keys.rsa_public,
                algorithms=["RS256"],
                audience=self.token_url,
                issuer=CLIENT_EMAIL,
            )
            if claims.get("scope") != SCOPE or claims["exp"] - claims["iat"] > 3600:
                raise ValueError(f"claims {claims}")
            if jwt.get_unverified_header(form["assertion"][0]).get("kid") != "kid-1":
                raise ValueError("kid")
        except (ValueError, KeyError, jwt.PyJWTError) as e:
            self.refuse(f"fcm token: {e}")
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        access = f"ya29.fake-{self.token_requests}"
        self.access_tokens[access] = time.time() + self.access_seconds
        return JSONResponse(
            {"access_token": access, "expires_in": self.access_seconds, "token_type": "Bearer"}
        )

    async def fcm_send(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """`POST /v1/projects/<id>/messages:send` (served over HTTP/2, as FCM is)."""
        bearer = headers.get("authorization", "").removeprefix("Bearer ")
        if self.access_tokens.get(bearer, 0) < time.time():
            self.refuse(f"fcm: bearer {bearer!r}")
            return _fcm_error(401, "UNAUTHENTICATED", None)
        if headers.get(":path") != f"/v1/projects/{PROJECT}/messages:send":
            self.refuse(f"fcm: path {headers.get(':path')}")
        message = orjson.loads(body)["message"]
        problems = []
        if not isinstance(message.get("token"), str):
            problems.append("token")
        if not all(isinstance(v, str) for v in message.get("data", {}).values()):
            problems.append("data values must be strings")
        if not message.get("android", {}).get("collapse_key"):
            problems.append("collapse_key")
        if problems:
            self.refuse(f"fcm: {problems}")
            return _fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT")
        token = message["token"]
        mode = await self.behave(f"fcm:{token}", self.tokens.get(token, "ok"))
        if mode == "gone":
            return _fcm_error(404, "NOT_FOUND", "UNREGISTERED")
        if mode != "ok":
            return _fcm_error(500, "INTERNAL", "INTERNAL")
        self.delivered.append((f"fcm:{token}", message))
        return 200, orjson.dumps({"name": f"projects/{PROJECT}/messages/{len(self.delivered)}"})

    async def h2(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """The HTTP/2 services: FCM sends and APNs."""
        if headers.get(":path", "").startswith("/v1/projects/"):
            return await self.fcm_send(headers, body)
        return await self.apns(headers, body)

    def http_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/hook", self.webhook, methods=["POST"]),
                Route("/token", self.fcm_token, methods=["POST"]),
                Route("/_stats", self.stats, methods=["GET"]),
            ]
        )

    async def stats(self, request: Request) -> Response:
        """Counts per destination kind and the refusals, for a test in another process."""
        kinds: dict[str, int] = {}
        for destination, _ in self.delivered:
            kind = destination.split(":", 1)[0]
            kinds[kind] = kinds.get(kind, 0) + 1
        profiles = len({body["profileId"] for body in self.to("webhook")})
        return JSONResponse({"delivered": kinds, "profiles": profiles, "refused": self.refused})

    # --- APNs ---------------------------------------------------------------------------

    async def apns(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        assert self.keys is not None
        path = headers.get(":path", "")
        if headers.get(":method") != "POST" or not path.startswith("/3/device/"):
            self.refuse(f"apns: {headers.get(':method')} {path}")
            return 405, b'{"reason":"MethodNotAllowed"}'
        token = path.removeprefix("/3/device/")
        try:
            provider = headers.get("authorization", "").removeprefix("bearer ")
            if jwt.get_unverified_header(provider).get("kid") != KEY_ID:
                raise ValueError("kid")
            claims = jwt.decode(provider, self.keys.ec_public, algorithms=["ES256"])
            if claims.get("iss") != TEAM or abs(time.time() - claims["iat"]) > 3600:
                raise ValueError(f"claims {claims}")
        except (ValueError, KeyError, jwt.PyJWTError) as e:
            self.refuse(f"apns: provider token: {e}")
            return 403, b'{"reason":"InvalidProviderToken"}'
        problems = []
        if headers.get("apns-topic") != TOPIC:
            problems.append("apns-topic")
        if headers.get("apns-push-type") not in ("alert", "background"):
            problems.append("apns-push-type")
        if len(headers.get("apns-collapse-id", "").encode()) not in range(1, 65):
            problems.append("apns-collapse-id")
        payload = orjson.loads(body) if len(body) <= 4096 else None
        if not isinstance(payload, dict) or "aps" not in payload:
            problems.append("payload")
        if problems:
            self.refuse(f"apns: {problems}")
            return 400, b'{"reason":"BadRequest"}'
        mode = await self.behave(f"apns:{token}", self.tokens.get(token, "ok"))
        if mode == "gone":
            return 410, orjson.dumps({"reason": "Unregistered", "timestamp": int(time.time())})
        if mode != "ok":
            return 500, b'{"reason":"InternalServerError"}'
        self.delivered.append((f"apns:{token}", {"headers": headers, "payload": payload}))
        return 200, b""


class H2Server(asyncio.Protocol):
    """A minimal HTTP/2 server (h2c, prior knowledge) calling `handler(headers, body)`."""

    def __init__(self, handler: Callable[[dict[str, str], bytes], Awaitable[tuple[int, bytes]]]):
        self.handler = handler
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conn.initiate_connection()
        transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.streams[event.stream_id] = (dict(event.headers), bytearray())
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id][1].extend(event.data)
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                headers, body = self.streams.pop(event.stream_id)
                task = asyncio.create_task(self.respond(event.stream_id, headers, bytes(body)))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        self.flush()

    async def respond(self, stream_id: int, headers: dict[str, str], body: bytes) -> None:
        status, answer = await self.handler(headers, body)
        with contextlib.suppress(Exception):  # the client may have gone meanwhile
            self.conn.send_headers(
                stream_id,
                [
                    (":status", str(status)),
                    ("content-length", str(len(answer))),
                    ("content-type", "application/json"),
                ],
                end_stream=not answer,
            )
            if answer:
                self.conn.send_data(stream_id, answer, end_stream=True)
            self.flush()

    def flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.conn.data_to_send())


@dataclass
class Running:
    fakes: Fakes
    http_url: str
    h2_url: str


@contextlib.asynccontextmanager
async def fake_providers(directory: Path) -> AsyncIterator[Running]:
    """The three fake services on free loopback ports, in this event loop."""
    http_port = free_port()
    http_url = f"http://127.0.0.1:{http_port}"
    fakes = Fakes(token_url=f"{http_url}/token")
    fakes.keys = make_keys(directory, fakes.token_url)
    server = uvicorn.Server(
        uvicorn.Config(fakes.http_app(), host="127.0.0.1", port=http_port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    loop = asyncio.get_running_loop()
    h2_server = await loop.create_server(lambda: H2Server(fakes.h2), "127.0.0.1", 0)
    apns_port = h2_server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.01)
        yield Running(fakes, http_url, f"http://127.0.0.1:{apns_port}")
    finally:
        fakes.release.set()
        server.should_exit = True
        h2_server.close()
        async with asyncio.timeout(10):
            await task


def _fcm_error(status: int, name: str, code: str | None) -> tuple[int, bytes]:
    error: dict[str, Any] = {"code": status, "message": name, "status": name}
    if code:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}
        ]
    return status, orjson.dumps({"error": error})


def push_toml(running: Running, keys: Keys, **push: object) -> str:
    """The test apps (tests/support/server.py) with `[apps.demo.push]` pointing at the fakes."""
    settings = {
        "webhook_url": f"{running.http_url}/hook",
        "webhook_secret": WEBHOOK_SECRET,
        "fcm_project_id": PROJECT,
        "fcm_service_account_file": str(keys.account_file),
        "fcm_base_url": running.h2_url,
        "apns_topic": TOPIC,
        "apns_team_id": TEAM,
        "apns_key_id": KEY_ID,
        "apns_key_file": str(keys.apns_key_file),
        "apns_base_url": running.h2_url,
        "max_attempts": 3,
        "collapse_seconds": 0,
        **push,
    }
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items() if v is not None)
    return f"{APPS_TOML}\n[apps.demo.push]\n{lines}\n"


async def _serve_forever(directory: Path) -> None:
    """`python -m tests.support.push_fakes DIR`: the fakes in a process of their own (so a
    benchmark's node does not share its CPU with them); prints one JSON line with their URLs
    and key files, then serves (`GET /_stats`) until killed."""
    async with fake_providers(directory) as fake:
        assert fake.fakes.keys is not None
        print(json.dumps({"http": fake.http_url, "h2": fake.h2_url}), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    import sys

    asyncio.run(_serve_forever(Path(sys.argv[1])))
