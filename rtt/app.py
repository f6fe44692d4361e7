"""create_app(): the one place where settings, engine, hub and front doors are wired together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from rtt import interpreter
from rtt.api import admin, nexudus, rtt_socket
from rtt.api.dispatcher import client_dispatcher
from rtt.api.health import healthz, readyz
from rtt.api.http import http_error
from rtt.api.metrics import metrics as metrics_endpoint
from rtt.api.openapi import docs, openapi_json
from rtt.api.rongcloud import ROUTES as RONGCLOUD_ROUTES
from rtt.api.s2s import s2s_dispatcher
from rtt.api.status import status_endpoint
from rtt.core import (
    accounts,
    channel,
    chat_user_messages,
    events,
    messaging,
    push_ops,
    system,
)
from rtt.core.node import Node
from rtt.core.push_dispatch import Dispatcher
from rtt.core.registry import Operations
from rtt.engines.base import Engine, Retention
from rtt.engines.local import local_engine
from rtt.engines.redis import redis_engine
from rtt.front_door import front_door
from rtt.http_protocol import HttpLimits
from rtt.metrics import Metrics
from rtt.push.providers import Providers
from rtt.realtime.hub import Hub
from rtt.settings import Settings
from rtt.tasks import stop_task
from rtt.websocket.protocol import ENDPOINT_KEY, WebSocketProtocol

log = logging.getLogger("rtt")


def build_engine(settings: Settings) -> Engine:
    """The engine named by the settings."""
    retention = Retention(
        settings.event_max_seconds, settings.outbox_max_entries, settings.outbox_max_seconds
    )
    if settings.engine == "local":
        return local_engine(
            settings.database,
            stream_max_items=settings.stream_max_items,
            stream_max_seconds=settings.stream_max_seconds,
            retention=retention,
        )
    return redis_engine(
        settings.redis_url,
        timeout=settings.redis_timeout_seconds,
        probe_interval=settings.probe_interval_seconds,
        presence_ttl=settings.presence_ttl_seconds,
        stream_max_items=settings.stream_max_items,
        stream_max_seconds=settings.stream_max_seconds,
        pool_size=settings.redis_pool_size,
        cluster=settings.redis_cluster,
        replicas=settings.redis_wait_replicas,
        replica_timeout=settings.redis_wait_seconds,
        retention=retention,
        sys_scan_max=settings.sys_scan_max,
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


def create_app(settings: Settings, *, engine: Engine | None = None) -> Starlette:
    """The HTTP app; its lifespan starts the engine and hands `/rtt` to the WebSocket protocol."""
    engine = engine or build_engine(settings)
    registry = Operations.combine(
        messaging.operations,
        events.operations,
        system.operations,
        accounts.operations,
        channel.operations,
        chat_user_messages.operations,
        push_ops.operations,
    )
    metrics = Metrics(settings.metrics, settings.metrics_cache_seconds)
    node = Node(settings, engine, Hub(engine.presence, metrics), registry, metrics)
    hub = node.hub

    def on_gap() -> None:
        """The broker reconnected: fan-outs may have been lost, every session heals."""
        metrics.broker_reconnects.inc()
        hub.heal_all()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await engine.start(hub.dispatch, on_gap)
        tasks = [asyncio.create_task(_sweep_forever(node)), asyncio.create_task(_watch_epoch(node))]
        providers = None
        if settings.push_dispatcher and any(a.push for a in settings.apps.values()):
            providers = Providers(settings)
            dispatcher = Dispatcher(settings, engine, providers.apps, on_dead=metrics.dead_lettered)
            app.state.dispatcher = dispatcher
            tasks.append(asyncio.create_task(dispatcher.run()))
        endpoint = rtt_socket.endpoint(node)
        interpreter.started()
        try:
            # uvicorn passes lifespan state to each WebSocketProtocol it builds
            yield {ENDPOINT_KEY: endpoint}
        finally:
            await asyncio.gather(*(stop_task(task) for task in tasks))
            if providers is not None:
                await providers.close()
            await engine.close()

    app = Starlette(
        routes=[
            Route("/s2sdispatcher", s2s_dispatcher, methods=["POST"]),
            Route("/dispatcherv2", client_dispatcher, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/status", status_endpoint(), methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            Route("/docs", docs, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *RONGCLOUD_ROUTES,
            *nexudus.ROUTES,
            *admin.ROUTES,
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.node = node
    return app


def server_config(settings: Settings, **log_options: Any) -> uvicorn.Config:
    """How every rtt node runs under uvicorn (`rtt serve` and the tests alike): HTTP on
    Starlette behind a protocol with deadlines and a connection ceiling, WebSocket upgrades to
    rtt's own WebSocket protocol. `log_options` are uvicorn's log_config and log_level.

    On SIGTERM uvicorn stops accepting, asks every connection to shut down (sockets get
    DISCONNECT and 1012, idle HTTP connections close, a request in progress finishes and gets
    its answer), waits up to RTT_SHUTDOWN_SECONDS for them, then runs the lifespan's end."""
    limits = HttpLimits(
        max_connections=settings.max_connections,
        header_timeout=settings.http_header_timeout_seconds,
        body_timeout=settings.http_body_timeout_seconds,
        linger=settings.close_timeout_seconds,
        max_head_bytes=settings.http_max_head_bytes,
    )
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        http=front_door(limits),
        ws=WebSocketProtocol,
        # typed int by uvicorn, but it is only ever handed to call_later (seconds, a float)
        timeout_keep_alive=settings.http_keepalive_seconds,  # type: ignore[arg-type]
        timeout_graceful_shutdown=settings.shutdown_seconds,  # type: ignore[arg-type]
        lifespan="on",
        access_log=False,
        **log_options,
    )
