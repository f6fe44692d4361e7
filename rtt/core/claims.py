"""Run a request at most once across every node sharing the engine (Store.claim / settle).

Both HTTP doors that promise "a resend is answered, never re-run" use this one helper: the S2S
dispatcher for Idempotency-Keys and session packets, the client dispatcher for its packets.
The key is claimed in the engine before anything runs (one atomic step shared by all nodes);
the first attempt's (status, body) is recorded under the claim, so a duplicate, wherever it
lands, answers that response and runs nothing. One that arrives while the first still runs
waits for it (polling, at most `idempotency_wait_seconds`). A holder renews its claim while it
runs; one whose node died frees it after `idempotency_claim_seconds`, so a retry then runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable

from rtt.core.node import Node
from rtt.engines.base import ClaimState, EngineUnavailable, Store

POLL_FIRST_SECONDS = 0.005  # a waiting duplicate asks again after this, doubling
POLL_MAX_SECONDS = 0.2  # ... up to this

Produce = Callable[[], Awaitable[tuple[int, bytes]]]


async def _renew(
    store: Store, app: str, key: str, fingerprint: bytes, token: str, ttl: float
) -> None:
    """Keep a claim alive while its request runs, however long that takes."""
    while True:
        await asyncio.sleep(ttl / 3)
        with contextlib.suppress(EngineUnavailable):  # the next round tries again
            await store.claim(app, key, fingerprint, token, ttl)


async def exactly_once(
    node: Node,
    app: str,
    key: str,
    fingerprint: bytes,
    lifetime: float,
    produce: Produce,
) -> tuple[int, bytes] | ClaimState:
    """Run `produce` at most once for (app, key) across every node sharing the engine and
    answer its (status, body), here or recorded by the first attempt (for `lifetime` seconds;
    a status >= 500 is not recorded, so a retry runs). CONFLICT if the key is held for another
    fingerprint, PENDING if the first attempt was still running after the wait bound."""
    store, settings = node.engine.store, node.settings
    token, hold = uuid.uuid4().hex, settings.idempotency_claim_seconds
    deadline = time.monotonic() + settings.idempotency_wait_seconds
    delay = POLL_FIRST_SECONDS
    while True:
        state, recorded = await store.claim(app, key, fingerprint, token, hold)
        if state is ClaimState.DONE and recorded is not None:
            return int(recorded[:3]), recorded[3:]
        if state is ClaimState.OWNED:
            break
        now = time.monotonic()
        if state is ClaimState.CONFLICT or now >= deadline:
            return state
        await asyncio.sleep(min(delay, deadline - now))
        delay = min(delay * 2, POLL_MAX_SECONDS)
    renewer = asyncio.create_task(_renew(store, app, key, fingerprint, token, hold))
    try:
        status, body = await produce()
    except BaseException:
        with contextlib.suppress(EngineUnavailable):  # else it frees itself after `hold`
            await store.settle(app, key, token, None, 0.0)
        raise
    finally:
        renewer.cancel()
    record = b"%03d" % status + body if status < 500 else None
    await store.settle(app, key, token, record, lifetime)
    return status, body
