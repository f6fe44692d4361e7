"""`GET /metrics`: the node's metrics in Prometheus text format (rtt/metrics.py).

What only the engine knows (the push outbox's depth per app) is read here, at scrape time,
through a short cache (RTT_METRICS_CACHE_SECONDS), never on the send path. An engine that does
not answer leaves the last values in place: a scrape still gets every other metric.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response

from rtt.api.http import json_response
from rtt.core.node import Node
from rtt.engines.base import EngineUnavailable
from rtt.errors import Reason, RttError
from rtt.metrics import CONTENT_TYPE

log = logging.getLogger("rtt.metrics")


async def outbox_depths(node: Node) -> dict[str, int]:
    """Entries waiting in the push outbox, per app (cached; see the module docstring)."""

    async def read() -> dict[str, int]:
        outbox = node.engine.outbox
        return {app: await outbox.depth(app) for app in node.settings.apps}

    try:
        depths = await node.metrics.outbox.get(read)
    except EngineUnavailable as e:  # the other metrics still answer
        log.warning("outbox depth unavailable: %s", e)
        return {}
    node.metrics.outbox_depth(depths)
    return depths


async def metrics(request: Request) -> Response:
    node: Node = request.app.state.node
    if not node.metrics.enabled:
        off = RttError(404, Reason.INVALID_REQUEST, "metrics are off (RTT_METRICS=false)")
        return json_response(off.body(), 404)
    await outbox_depths(node)
    return Response(node.metrics.exposition(), media_type=CONTENT_TYPE)
