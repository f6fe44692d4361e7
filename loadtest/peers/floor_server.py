"""The fan-out benchmark's transport floor: the least a Python broadcast server can do per delivery.

    python -m loadtest.peers.floor_server --port 8098 --ws-port 8097

A picows WebSocket server (its frame parsing and writing are Cython) with no protocol above the
transport. A client connects to `ws://host:ws-port/<profile>` and is told `{"ready":1}`;
`POST /send {"to": [...], "content": {...}}` on the HTTP port writes to each recipient's sockets
a frame shaped like rtt's (so the bytes per delivery are alike), its body serialized once and
only `{"seq":N,` per recipient, with one `send()` per socket. `GET /readyz` answers 200.

It persists nothing, authenticates nobody and keeps no backlog: what rtt costs per delivery
above this server's is the price of rtt's work, measured against a floor from the same run
(machines differ from day to day; only ratios from one run mean anything).

The HTTP side is a few lines of asyncio for the generator's keep-alive POSTs, not an HTTP
server: it reads `Content-Length` bodies and answers 200 or 400.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import uvloop
from picows import WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from loadtest.node import ServerProcess, free_port, running

MAX_RECIPIENTS = 1000
MAX_BODY_BYTES = 1 << 20
READY = b'{"ready":1}'
ROOT = Path(__file__).resolve().parents[2]


class Floor:
    """Sockets by profile, and a seq per profile so the generator counts loss and duplicates."""

    def __init__(self) -> None:
        self.sockets: defaultdict[str, set[WSTransport]] = defaultdict(set)
        self.seqs: defaultdict[str, int] = defaultdict(int)

    def listener(self, request: WSUpgradeRequest) -> WSListener:
        return ProfileListener(self, request.path.decode().lstrip("/"))

    def send(self, body: bytes) -> bytes | None:
        """Push one message; the reply body, or None for a bad request."""
        try:
            request = orjson.loads(body)
            to, content = request["to"], request["content"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(to, list) or not 0 < len(to) <= MAX_RECIPIENTS:
            return None
        rest = orjson.dumps(
            {"service": "messaging", "operation": "INCOMING",
             "data": {"msgbox": "inbox", "read": False, "message": {"content": content}}}
        )[1:]  # fmt: skip
        for profile in to:
            seq = self.seqs[profile] = self.seqs[profile] + 1
            frame = b'{"seq":%d,%b' % (seq, rest)
            for transport in self.sockets.get(profile, ()):
                transport.send(WSMsgType.TEXT, frame)
        return b'{"ok":1}'


class ProfileListener(WSListener):
    """One socket of `profile`: registered once open, forgotten once gone."""

    def __init__(self, floor: Floor, profile: str) -> None:
        self.floor, self.profile = floor, profile

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.floor.sockets[self.profile].add(transport)
        transport.send(WSMsgType.TEXT, READY)

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        sockets = self.floor.sockets.get(self.profile)
        if sockets is not None:
            sockets.discard(transport)
            if not sockets:
                del self.floor.sockets[self.profile]


class SendProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1 for `POST /send` and `GET /readyz`, as the generator sends them."""

    def __init__(self, floor: Floor) -> None:
        self.floor = floor
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1").lower()
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip() == "content-length":
                    length = int(value)
            if length > MAX_BODY_BYTES:
                self.respond(b"413 Content Too Large", b"")
                return
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            if head.startswith("get /readyz "):
                self.respond(b"200 OK", b"ok")
            elif head.startswith("post /send "):
                reply = self.floor.send(body)
                self.respond(b"200 OK" if reply else b"400 Bad Request", reply or b"{}")
            else:
                self.respond(b"404 Not Found", b"")

    def respond(self, status: bytes, body: bytes) -> None:
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %b\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n%b"
            % (status, len(body), body)
        )


async def serve(host: str, port: int, ws_port: int) -> None:
    floor = Floor()
    loop = asyncio.get_running_loop()
    ws = await ws_create_server(floor.listener, host, ws_port)
    http = await loop.create_server(lambda: SendProtocol(floor), host, port)
    async with ws, http:
        await asyncio.gather(ws.serve_forever(), http.serve_forever())


class FloorProcess(ServerProcess):
    """This module's server as a subprocess: `port` is its HTTP side, `ws_port` its sockets."""

    label = "floor-peer"

    def __init__(self, *, cpus: set[int] | None = None) -> None:
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        super().__init__(env={"PYTHONPATH": path}, cpus=cpus)
        self.ws_port = free_port()

    def command(self) -> list[str]:
        return [
            *(sys.executable, "-m", "loadtest.peers.floor_server", "--host", self.host),
            *("--port", str(self.port), "--ws-port", str(self.ws_port)),
        ]


def floor_peer(
    timeout: float = 15.0, cpus: set[int] | None = None
) -> contextlib.AbstractContextManager[FloorProcess]:
    """A ready floor peer on free loopback ports; always stopped."""
    return running(FloorProcess(cpus=cpus), timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098, help="HTTP: /send, /readyz")
    parser.add_argument("--ws-port", type=int, default=8097, help="WebSocket: /<profile>")
    args = parser.parse_args(argv)
    uvloop.run(serve(args.host, args.port, args.ws_port))


if __name__ == "__main__":
    main()
