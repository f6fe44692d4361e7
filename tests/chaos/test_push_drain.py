"""10 000 offline recipients drained through the fake providers, with the rate printed.

Each recipient has a device (FCM or APNs, alternately) and the app has a webhook, so the
dispatcher makes two provider requests per notification. The fakes run in a process of their
own; the node (and its dispatcher) in this one. `-s` shows the rate:
`pytest tests/chaos/test_push_drain.py -n 0 -s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from rtt.core.push_dispatch import Dispatcher
from rtt.engines.base import Device
from rtt.push.providers import Providers
from rtt.settings import load_apps
from tests.support.clients import S2S
from tests.support.push_fakes import Keys, Running, push_toml
from tests.support.server import running
from tests.support.server import test_settings as settings_for

pytestmark = pytest.mark.timeout(240)


@contextlib.asynccontextmanager
async def fakes_process(
    directory: Path,
) -> AsyncIterator[tuple[Running, Keys, Callable[[], Awaitable[dict[str, Any]]]]]:
    """The fake providers in a subprocess; yields their URLs, key files and a stats reader."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.push_fakes", str(directory),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        urls = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
        running = Running(None, urls["http"], urls["h2"])  # type: ignore[arg-type]
        keys = Keys(directory / "service-account.json", directory / "AuthKey.p8", None, None)
        async with httpx.AsyncClient(base_url=urls["http"], timeout=10) as http:

            async def stats() -> dict[str, Any]:
                return dict((await http.get("/_stats")).json())

            yield running, keys, stats
    finally:
        proc.kill()
        await proc.wait()


RECIPIENTS = int(__import__("os").environ.get("PUSH_N", "10000"))
PER_SEND = 1000


@pytest.mark.parametrize("engine", ["local", "redis", "redis-cluster"])
async def test_ten_thousand_offline_recipients_drain(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cluster = engine == "redis-cluster"
    url = (
        request.getfixturevalue("clean_cluster" if cluster else "clean_redis")
        if engine != "local"
        else ""
    )
    async with fakes_process(tmp_path) as (fake, keys, stats):
        (tmp_path / "push.toml").write_text(push_toml(fake, keys))
        settings = settings_for(
            tmp_path,
            apps=load_apps(tmp_path / "push.toml"),
            engine="redis" if cluster else engine,
            redis_cluster=cluster,
            redis_url=url or "redis://127.0.0.1:6379/0",
            push_dispatcher=False,
        )
        async with running(settings) as server:
            engine_ = server.node.engine
            profiles = [f"user-{i}" for i in range(RECIPIENTS)]
            for i, p in enumerate(profiles):
                platform, token = ("fcm", f"f{i}") if i % 2 else ("apns", f"a{i:04x}")
                await engine_.push.add_device("demo", p, Device(platform, token, 1), 10)
            s2s = S2S(server)
            for i in range(0, RECIPIENTS, PER_SEND):
                await s2s.send(profiles[i : i + PER_SEND])
            await s2s.close()
            assert await engine_.push.depth("demo") == RECIPIENTS
            providers = Providers(settings)
            dispatcher = Dispatcher(settings, engine_, providers.apps)
            started, cpu = time.perf_counter(), time.process_time()
            while await dispatcher.drain_once():
                pass
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            await providers.close()
            rate = RECIPIENTS / elapsed
            seen = await stats()
            print(
                f"\n[{engine}] drained {RECIPIENTS} notifications ({seen['delivered']} provider"
                f" requests) in {elapsed:.2f} s: {rate:.0f} notifications/s; the node's CPU:"
                f" {cpu:.2f} s, {RECIPIENTS / cpu:.0f} notifications per CPU-second"
            )
            assert await engine_.push.depth("demo") == 0
            half = RECIPIENTS // 2
            assert seen["delivered"] == {"webhook": RECIPIENTS, "fcm": half, "apns": half}
            assert seen["profiles"] == RECIPIENTS and seen["refused"] == []
            assert dispatcher.counters.settled == RECIPIENTS
