"""The fan-out benchmark's targets: how to log a socket in, read its frames and send to it.

rtt, the python-socketio peer, socket.io on Node.js (loadtest/peers/node_server.py) and the
transport floor (loadtest/peers/floor_server.py) are driven by the same raw client
(loadtest/wsclient.py) and the same counting (loadtest/counting.py); only the login exchange,
the frame prefix and the send request differ.
Everything a connect needs (rtt's JWTs included) is made by `sockets()`, before connects are
timed, so connects/s measures the server's handshake and authentication, not token signing.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import jwt
import orjson

from loadtest.counting import CountingSocket, Tally, stream_frame
from loadtest.node import APP, SECRET, SERVER_SECRET, Node, ServerProcess

if TYPE_CHECKING:
    from loadtest.peers.floor_server import FloorProcess

HEARTBEAT = b'{"service":"rtt","operation":"HEARTBEAT","data":{}}'


class RttSocket(CountingSocket):
    """An rtt socket: CONNECT with its token, then count `{"seq":N,...}` frames."""

    __slots__ = ("connect_frame", "target")
    fast = stream_frame(b"")

    def __init__(self, target: RttTarget, host: str, port: int, profile: str, tally: Tally) -> None:
        super().__init__(host, port, "/rtt", profile, tally)
        self.target = target
        token = jwt.encode({"sub": profile, "app": APP, "exp": int(time.time()) + 3600}, SECRET)
        connect = {"service": "rtt", "operation": "CONNECT", "data": {"auth": {"token": token}}}
        self.connect_frame = orjson.dumps(connect)

    def on_open(self) -> None:
        self.send(self.connect_frame)

    def other(self, payload: bytes, arrived_ns: int) -> None:
        frame = orjson.loads(payload)
        if not self.ready.done():
            if frame.get("service") != "rtt" or frame.get("operation") != "CONNECT":
                error = RuntimeError(f"CONNECT refused: {payload!r:.200}")
                self.ready.set_exception(error)
                return
            self.target.heartbeat_seconds = float(frame["data"]["heartbeatSeconds"])
            self.ready.set_result(None)
            return
        seq = frame.get("seq")
        if seq is not None:
            self.count(seq, frame["data"]["message"]["content"]["t"], arrived_ns)


class RttTarget:
    """rtt nodes: JWT in CONNECT on /rtt, frames as sent, sends via S2S `SYS_SEND_MESSAGE`."""

    name = "rtt"

    def __init__(self, nodes: list[Node], engine: str) -> None:
        self.nodes = nodes
        self.engine = engine
        self.heartbeat_seconds = 30.0

    @property
    def servers(self) -> list[ServerProcess]:
        return list(self.nodes)

    def sockets(self, profiles: list[str], tally: Tally) -> list[RttSocket]:
        """One unconnected socket per profile, spread over the nodes, each with its token."""
        nodes = itertools.cycle(self.nodes)
        return [
            RttSocket(self, n.host, n.port, p, tally) for n, p in zip(nodes, profiles, strict=False)
        ]

    async def keepalive(self, sockets: Sequence[CountingSocket]) -> None:
        """rtt closes a socket silent for twice heartbeatSeconds: heartbeat like a client would."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            for s in sockets:
                s.send(HEARTBEAT)

    def request(self, recipients: list[str]) -> tuple[str, bytes]:
        return "/s2sdispatcher", orjson.dumps(
            {
                "appId": APP, "serverName": "backend", "serverSecret": SERVER_SECRET,
                "service": "messaging", "operation": "SYS_SEND_MESSAGE",
                "data": {"toProfileIds": recipients, "contentJson": {"t": time.time_ns()},
                         "fromJson": {"id": None, "name": "bench"}},
            }
        )  # fmt: skip


# Engine.IO v4 straight over WebSocket: no polling handshake, no upgrade
ENGINEIO_PATH = "/socket.io/?EIO=4&transport=websocket"


class PeerSocket(CountingSocket):
    """Engine.IO v4 over WebSocket: server `0{...}` opens, client `40{"profile":...}` connects
    the namespace with auth, server `40{"sid":...}` confirms; events arrive as
    `42["message",{...}]`; the server pings `2`, the client answers `3`."""

    __slots__ = ()
    fast = stream_frame(b'42["message",')

    def on_open(self) -> None:
        """Nothing to send: the server speaks first (`0{...}`)."""

    def other(self, payload: bytes, arrived_ns: int) -> None:
        if payload == b"2":
            self.send(b"3")
        elif payload.startswith(b"42"):
            event, frame = orjson.loads(payload[2:])[:2]
            if event == "message" and frame.get("seq") is not None:
                self.count(frame["seq"], frame["data"]["message"]["content"]["t"], arrived_ns)
        elif not self.ready.done():
            if payload.startswith(b"0{"):
                self.send(b"40" + orjson.dumps({"profile": self.profile}))
            elif payload.startswith(b"40"):
                self.ready.set_result(None)
            else:
                error = RuntimeError(f"namespace connect refused: {payload!r:.200}")
                self.ready.set_exception(error)


class PeerTarget:
    """The python-socketio peer (loadtest/peers/socketio_server.py), with its `POST /send`."""

    name = "peer"
    engine = "socketio+redis"

    def __init__(self, peer: ServerProcess) -> None:
        self.peer = peer

    @property
    def servers(self) -> list[ServerProcess]:
        return [self.peer]

    def sockets(self, profiles: list[str], tally: Tally) -> list[PeerSocket]:
        peer = self.peer
        return [PeerSocket(peer.host, peer.port, ENGINEIO_PATH, p, tally) for p in profiles]

    async def keepalive(self, sockets: Sequence[CountingSocket]) -> None:
        """Engine.IO keeps itself alive: the server pings, `PeerSocket.other` answers."""

    def request(self, recipients: list[str]) -> tuple[str, bytes]:
        return "/send", orjson.dumps({"to": recipients, "content": {"t": time.time_ns()}})


class NodeTarget(PeerTarget):
    """socket.io on Node.js (loadtest/peers/node_server.py): the python peer's protocol and
    `POST /send` exactly, so only the server differs."""

    name = "node"
    engine = "socket.io on Node.js, in-memory adapter"


class FloorSocket(CountingSocket):
    """A floor socket: its profile in the path, ready once the server says `{"ready":1}`."""

    __slots__ = ()
    fast = stream_frame(b"")

    def on_open(self) -> None:
        """Nothing to send: the server speaks first."""

    def other(self, payload: bytes, arrived_ns: int) -> None:
        if not self.ready.done():
            if payload == b'{"ready":1}':
                self.ready.set_result(None)
            else:
                self.ready.set_exception(RuntimeError(f"not ready: {payload!r:.200}"))


class FloorTarget:
    """The transport floor (loadtest/peers/floor_server.py), with its `POST /send`."""

    name = "floor"
    engine = "picows, no persistence"

    def __init__(self, floor: FloorProcess) -> None:
        self.floor = floor

    @property
    def servers(self) -> list[ServerProcess]:
        return [self.floor]

    def sockets(self, profiles: list[str], tally: Tally) -> list[FloorSocket]:
        host, port = self.floor.host, self.floor.ws_port
        return [FloorSocket(host, port, f"/{p}", p, tally) for p in profiles]

    async def keepalive(self, sockets: Sequence[CountingSocket]) -> None:
        """The floor closes nothing for silence."""

    def request(self, recipients: list[str]) -> tuple[str, bytes]:
        return "/send", orjson.dumps({"to": recipients, "content": {"t": time.time_ns()}})


Target = RttTarget | PeerTarget | NodeTarget | FloorTarget
