"""Every integration test runs twice: on the embedded `local` engine and on `redis`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import server


@pytest.fixture(params=["local", "redis"], autouse=True)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    url = request.getfixturevalue("clean_redis") if request.param == "redis" else ""
    server.ENGINE.update(engine=request.param, redis_url=url)
    try:
        yield request.param
    finally:
        server.ENGINE.update(engine="local", redis_url="")
