"""create_app(): the one place where settings, engine, hub and front doors are wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from rtt.api.health import healthz, readyz
from rtt.api.s2s import s2s_dispatcher
from rtt.api.ws import rtt_socket
from rtt.core import operations
from rtt.core.node import Core
from rtt.engines.base import Engine
from rtt.engines.local import local_engine
from rtt.engines.redis import redis_engine
from rtt.realtime.hub import Hub
from rtt.runtime import Node
from rtt.settings import Settings
from rtt.tasks import stop_task

log = logging.getLogger("rtt")

assert operations.OPERATIONS  # every operation is registered before the first request


def build_engine(settings: Settings) -> Engine:
    """The engine named by the settings."""
    if settings.engine == "local":
        return local_engine(
            settings.database,
            stream_max_items=settings.stream_max_items,
            stream_max_seconds=settings.stream_max_seconds,
        )
    return redis_engine(
        settings.redis_url,
        timeout=settings.redis_timeout_seconds,
        probe_interval=settings.probe_interval_seconds,
        presence_ttl=settings.presence_ttl_seconds,
        stream_max_items=settings.stream_max_items,
        stream_max_seconds=settings.stream_max_seconds,
    )


async def _sweep_forever(node: Node) -> None:
    while True:
        await asyncio.sleep(node.settings.sweep_interval_seconds)
        try:
            await node.engine.store.sweep()
        except Exception:
            log.exception("sweep failed; retrying next interval")


async def _watch_epoch(node: Node) -> None:
    """If the store lost data, every session must RESYNC rather than silently miss items."""
    while True:
        await asyncio.sleep(node.settings.probe_interval_seconds)
        try:
            if await node.engine.store.check_epoch():
                log.warning("store epoch changed: data was lost; sessions resync")
                node.hub.resync_all()
        except Exception as e:
            log.warning("epoch check failed: %s", e)


class RttApp:
    """The ASGI entry point. `/rtt` sockets go straight to their handler: a long-lived socket
    should not carry Starlette's middleware stack (its frames, its memory) for hours. Everything
    else, lifespan included, is the Starlette app."""

    def __init__(self, http: Starlette, node: Node) -> None:
        self.http = http
        self.node = node
        self.state = http.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/rtt":
            await rtt_socket(self.node, WebSocket(scope, receive, send))
        else:
            await self.http(scope, receive, send)


def create_app(settings: Settings, *, engine: Engine | None = None) -> RttApp:
    engine = engine or build_engine(settings)
    hub = Hub(engine.presence)
    node = Node(settings, engine, hub, Core(settings, engine))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start(hub.dispatch, hub.heal_all)
        tasks = [asyncio.create_task(_sweep_forever(node)), asyncio.create_task(_watch_epoch(node))]
        try:
            yield
        finally:
            await asyncio.gather(*(stop_task(task) for task in tasks))
            await engine.close()

    app = Starlette(
        routes=[
            Route("/s2sdispatcher", s2s_dispatcher, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.node = node
    return RttApp(app, node)
