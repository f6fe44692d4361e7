"""`GET /status`: what an operator asks a node first (`rtt status`), as one small JSON object.

It is public like `/readyz`, so it holds nothing secret and nothing about any one tenant:
no app ids, profile ids, secrets or settings, only this node's totals (sockets, profiles,
push-outbox entries over every app) and whether its engine answers. Counting the outbox reads
the store, so the answer is computed at most once per CACHE_SECONDS however often it is asked.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from rtt import __version__
from rtt.api.http import json_response
from rtt.core.node import Node
from rtt.metrics import Snapshot

CACHE_SECONDS = 1.0
ENGINE_TIMEOUT = 2.0  # the same patience as /readyz


async def _engine(node: Node) -> dict[str, Any]:
    """Engine health and the outbox totals over every app, or why they could not be read."""
    engine = node.engine
    try:
        async with asyncio.timeout(ENGINE_TIMEOUT):
            await engine.ready()
            apps = list(node.settings.apps)
            depths = await asyncio.gather(*(engine.outbox.depth(app) for app in apps))
            dropped = await asyncio.gather(*(engine.outbox.dropped(app) for app in apps))
    except Exception as e:  # any failure to answer means not ready, as /readyz says
        return {"engine": {"ready": False, "error": type(e).__name__}, "outbox": None}
    return {
        "engine": {"ready": True, "error": None},
        "outbox": {"depth": sum(depths), "dropped": sum(dropped)},
    }


def status_endpoint() -> Callable[[Request], Awaitable[Response]]:
    """The `/status` handler of one app, with its own cache of the engine's answer."""
    cached: Snapshot[dict[str, Any]] = Snapshot(CACHE_SECONDS)
    # made per app, in the process that serves it: `rtt serve --workers` forks its workers
    name = f"{socket.gethostname()}:{os.getpid()}"

    async def status(request: Request) -> Response:
        """This node's name, version, engine kind and health, sockets and outbox totals."""
        node: Node = request.app.state.node
        health = await cached.get(lambda: _engine(node))
        profiles, sockets = node.hub.counts()
        body = {
            "status": "ok" if health["engine"]["ready"] else "unavailable",
            "node": name,
            "version": __version__,
            "engine": {"kind": node.settings.engine, **health["engine"]},
            "connections": {"sockets": sockets, "profiles": profiles},
            "outbox": health["outbox"],
        }
        return json_response(body, 200 if health["engine"]["ready"] else 503)

    return status
