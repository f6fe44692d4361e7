"""Operational S2S operations: who is online, what awaits push, and client connection tokens."""

from __future__ import annotations

import re
from typing import Any

from rtt import tokens
from rtt.core.node import Node
from rtt.core.registry import CLIENT, SERVER, Caller, Operations
from rtt.domain import fields
from rtt.domain.identities import is_system_identity
from rtt.domain.paging import cut_short, decode_after, encode_after
from rtt.errors import Reason, RttError, read_only
from rtt.settings import Settings

operations = Operations()  # this module's operations; app.py builds the registry from them

MAX_TOKEN_TTL = 7 * 24 * 3600
PUSH_ID = re.compile(r"[0-9]{1,18}(-[0-9]{1,18})?")  # a row id (local) or a stream id (redis)


@operations.add("presence", "SYS_GET_ONLINE", roles=(SERVER,))
async def sys_get_online(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    ids = fields.id_list(data, "profileIds", max_count=caller.app.limits.max_recipients_s2s)
    online = await node.engine.presence.online(caller.app_id, ids)
    return {"online": {p: p in online for p in ids}}


@operations.add("push", "SYS_GET_PENDING", roles=(SERVER,))
async def sys_get_pending(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """The push outbox oldest first: at most `limit` entries, cut at reply_max_bytes. A reply
    with more after it says `moreAfter: true` and carries the `context` that continues it.
    `dropped` counts the app's entries retention removed undelivered (RTT_OUTBOX_MAX_*);
    `depth` is how many entries the app's outbox holds (not yet settled by a dispatcher)."""
    profile = data.get("profileId")
    if profile is not None:
        profile = fields.string(data, "profileId", max_length=fields.MAX_ID_LENGTH)
    limit = fields.integer(data, "limit", low=1, high=1000, default=100)
    after = None
    if data.get("context") is not None:
        [after] = decode_after("push", data["context"], (str,))
        if not PUSH_ID.fullmatch(after):
            raise RttError(400, Reason.BAD_CONTEXT, "malformed context")
    entries, more = await node.engine.outbox.pending(
        caller.app_id, profile, limit, after, node.settings.reply_max_bytes
    )
    context = encode_after("push", [entries[-1].push_id]) if entries else None
    dropped = await node.engine.outbox.dropped(caller.app_id)
    depth = await node.engine.push.depth(caller.app_id)
    body = {"items": [e.item() for e in entries], "dropped": dropped, "depth": depth}
    return cut_short(body, more, context)


@operations.add(
    "rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", roles=(SERVER,), feature="rtt"
)
async def request_client_connection_token(
    node: Node, caller: Caller, data: dict[str, Any]
) -> dict[str, Any]:
    profile = fields.string(data, "profileId", max_length=fields.MAX_ID_LENGTH)
    ttl = fields.integer(data, "ttlSeconds", low=1, high=MAX_TOKEN_TTL, default=3600)
    if is_system_identity(profile, caller.app.system_identities):
        raise read_only(f"{profile!r} is a system identity of the app, not a profile")
    token, expires_at = tokens.mint(caller.app_id, caller.app, profile, ttl)
    return {"token": token, "expiresAt": expires_at * 1000, "endpoints": endpoints(node.settings)}


def endpoints(settings: Settings) -> list[dict[str, Any]]:
    """Where clients open their socket: this node's public address (RTT_PUBLIC_HOST/PORT)."""
    return [
        {
            "protocol": "ws",
            "host": settings.endpoint_host,
            "port": settings.endpoint_port,
            "ssl": False,
        }
    ]


@operations.add("heartbeat", "HEARTBEAT", roles=(SERVER, CLIENT))
async def heartbeat(node: Node, caller: Caller, data: dict[str, Any]) -> None:
    """Keeps an S2S or client session alive: the dispatchers extend the session on every
    packet, so there is nothing left to do. brainCloud answers `"data": null`."""
    return None
