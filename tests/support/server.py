"""A real rtt node on a free loopback port, in this test process's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn

from rtt.app import server_config
from rtt.settings import AppConfig, Settings, build_settings, load_apps

APPS_TOML = """
[apps.demo]
secret = "client-secret-0123456789abcdef0123456789"
app_key = "demo-key"
app_secret = "rc-secret"
[apps.demo.servers]
backend = "server-secret"
[apps.demo.users.admin]
password = "admin-password"
roles = ["admin"]

[apps.quiet]
secret = "quiet-secret-0123456789abcdef0123456789ab"
[apps.quiet.servers]
backend = "quiet-server-secret"
[apps.quiet.features]
messaging = false
events = false
push = false
rtt = false

[apps.tight]
secret = "tight-secret-0123456789abcdef0123456789ab"
system_identities = ["System", "Support Bot"]
[apps.tight.servers]
backend = "tight-server-secret"
[apps.tight.limits]
max_content_bytes = 256
max_recipients_s2s = 3
max_recipients_user = 2
max_frame_bytes = 1024
client_requests_per_second = 3
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_apps(tmp: Path) -> dict[str, AppConfig]:
    path = tmp / "apps.toml"
    path.write_text(APPS_TOML)
    return load_apps(path)


# The engine integration tests run on; tests/integration/conftest.py runs each test once per
# engine by setting this before the test builds its settings.
ENGINE = {"engine": "local", "redis_url": ""}


def test_settings(tmp: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "apps": test_apps(tmp),
        "port": free_port(),
        "database": tmp / "rtt.db",
        "engine": ENGINE["engine"],
        "redis_url": ENGINE["redis_url"] or "redis://127.0.0.1:6379/0",
        "heartbeat_seconds": 5.0,
        "sweep_interval_seconds": 3600.0,
        "probe_interval_seconds": 0.5,
    }
    return build_settings(**(values | overrides))


class RunningServer:
    """uvicorn serving create_app(settings) until stopped."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = server_config(settings, log_level="warning")
        self.app = config.app
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.port}/rtt"

    @property
    def node(self):
        return self.app.state.node

    @property
    def protocol_class(self) -> type:
        """The protocol uvicorn builds for each accepted connection (rtt/front_door.py)."""
        return self._server.config.http_protocol_class  # type: ignore[no-any-return]

    @property
    def connections(self) -> int:
        """Open HTTP and WebSocket connections, as uvicorn counts them."""
        return len(self._server.server_state.connections)

    async def start(self) -> RunningServer:
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            async with asyncio.timeout(10):
                await self._task


@contextlib.asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[RunningServer]:
    server = await RunningServer(settings).start()
    try:
        yield server
    finally:
        await server.stop()
