"""The fan-out benchmark's peer: what a Python team would hand-roll instead of rtt.

    python -m loadtest.peers.socketio_server --port 8099 --redis-url redis://127.0.0.1:6379/0

python-socketio (`AsyncServer`, ASGI, served by uvicorn) with the Redis manager
(`socketio.AsyncRedisManager`), WebSocket transport only, no permessage-deflate, stdlib JSON
(python-socketio's default). A client connects with `auth={"profile": "<id>"}` (or
`?profile=<id>`) and joins the room named after its profile. `POST /send
{"to": [...], "content": {...}, "from": {...}}` emits `message` to each recipient's room, with a
payload shaped like rtt's frame and a per-recipient `seq` kept in memory, so the generator counts
loss and duplicates the same way for both servers. `GET /readyz` answers 200.

It persists nothing and authenticates nobody: a restart loses every seq and every message in
flight, and anyone may claim any profile. rtt writes each message to its store before pushing it
and verifies a JWT per socket, so comparing the two is conservative: the peer is spared work rtt
does. Each emit is also published on Redis (the manager's fan-out to other peer processes), as it
would be with more than one process; with one process nobody else reads it.

`PeerProcess` runs it as a subprocess with loadtest/node.py's process handling.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from loadtest.node import ServerProcess, running

MAX_RECIPIENTS = 1000
ROOT = Path(__file__).resolve().parents[2]


def create_app(redis_url: str) -> Any:
    """The ASGI app: Socket.IO on /socket.io/, `POST /send` and `GET /readyz` beside it."""
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=socketio.AsyncRedisManager(redis_url),
        transports=["websocket"],
    )
    seqs: defaultdict[str, int] = defaultdict(int)

    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        profile = auth.get("profile") if isinstance(auth, dict) else None
        if not profile:
            profile = parse_qs(environ.get("QUERY_STRING", "")).get("profile", [""])[0]
        if not isinstance(profile, str) or not profile:
            raise socketio.exceptions.ConnectionRefusedError("auth.profile is required")
        await sio.enter_room(sid, profile)

    sio.on("connect", connect)

    async def send(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
            to, content = body["to"], body["content"]
            sender = body.get("from", {"id": None, "name": "peer"})
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "expected {to: [...], content: {...}}"}, 400)
        if not isinstance(to, list) or not 0 < len(to) <= MAX_RECIPIENTS:
            return JSONResponse({"error": f"to: 1 to {MAX_RECIPIENTS} profile ids"}, 400)
        msg_id, now = uuid.uuid4().hex, int(time.time() * 1000)
        for profile in to:
            seqs[profile] += 1
            await sio.emit(
                "message",
                {
                    "seq": seqs[profile], "service": "messaging", "operation": "INCOMING",
                    "data": {
                        "msgbox": "inbox", "msgId": msg_id, "read": False,
                        "mbCr": now, "mbUp": now, "mbVer": 1,
                        "msgCr": now, "msgUp": now, "msgVer": 1,
                        "message": {
                            "from": sender, "to": [profile], "sentAt": now, "content": content,
                        },
                    },
                },
                to=profile,
            )  # fmt: skip
        return JSONResponse({"msgId": msg_id})

    async def readyz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [Route("/send", send, methods=["POST"]), Route("/readyz", readyz)]
    return socketio.ASGIApp(sio, other_asgi_app=Starlette(routes=routes))


class PeerProcess(ServerProcess):
    """This module's server as a subprocess (`start()`, `stop()`, `pid`, … as for rtt nodes)."""

    label = "socketio-peer"

    def __init__(self, redis_url: str, *, port: int | None = None, cpus: set[int] | None = None):
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        super().__init__(env={"PYTHONPATH": path}, port=port, cpus=cpus)
        self.redis_url = redis_url

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "loadtest.peers.socketio_server", "--host", self.host),
            *("--port", str(self.port), "--redis-url", self.redis_url, "--log-level", "warning"),
        ]


def socketio_peer(
    redis_url: str, timeout: float = 15.0, cpus: set[int] | None = None
) -> contextlib.AbstractContextManager[PeerProcess]:
    """A ready peer on a free loopback port; always stopped."""
    return running(PeerProcess(redis_url, cpus=cpus), timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    uvicorn.run(
        create_app(args.redis_url),
        host=args.host,
        port=args.port,
        ws_per_message_deflate=False,
        lifespan="on",
        log_level=args.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
