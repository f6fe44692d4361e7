"""Fixtures: a real rtt node per test on a free loopback port, and real clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.clients import S2S
from tests.support.server import RunningServer, running, test_settings


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with running(test_settings(tmp_path)) as node:
        yield node


@pytest.fixture
async def s2s(server: RunningServer) -> AsyncIterator[S2S]:
    client = S2S(server)
    yield client
    await client.close()
