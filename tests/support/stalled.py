"""A socket that resumes with `since` and then stops reading, so its replay stalls mid-way."""

from __future__ import annotations

from typing import Any

import orjson

from rtt.realtime.session import Session
from tests.support.clients import token
from tests.support.raw_ws import TEXT, Raw, http_request, upgrade_request
from tests.support.server import RunningServer


async def stalled_replay(server: RunningServer, profile: str, since: int = 0) -> Raw:
    """CONNECT with `since` over a 4 KiB receive buffer, read the CONNECT reply and nothing
    more: a backlog larger than the socket buffers leaves the session replaying, not live."""
    target = f"/rtt?token={token(profile)}"
    raw, head = await http_request(server.settings.port, upgrade_request(target), rcvbuf=4096)
    assert head.startswith(b"HTTP/1.1 101 "), head
    connect = {"service": "rtt", "operation": "CONNECT", "data": {"since": since}}
    raw.send(TEXT, orjson.dumps(connect))
    reply = await raw.recv_json()
    assert reply["operation"] == "CONNECT", reply
    return raw


def session_of(server: RunningServer, profile: str, app: str = "demo") -> Session:
    """The node's one session for `profile` (the test holds one socket for it)."""
    [session] = server.node.hub._sessions[(app, profile)]
    return session


def held_bytes(session: Session) -> int:
    """What the session holds in `pending`, counted from the frames themselves."""
    return sum(len(frame) for _, frame in session._pending)


async def read_all(raw: Raw, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """Read frames until `count` stream frames (with a seq) came; return every frame read."""
    frames: list[dict[str, Any]] = []
    seen = 0
    while seen < count:
        opcode, payload = await raw.recv(timeout)
        assert opcode == TEXT, (opcode, payload[:200])
        frame = orjson.loads(payload)
        frames.append(frame)
        seen += "seq" in frame
    return frames
