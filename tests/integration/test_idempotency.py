"""Exactly once per Idempotency-Key (API.md §2): the key is claimed in the engine before
anything runs, bound to a fingerprint of the request, and a duplicate that cannot get the first
answer within its wait bound is told to retry, never run a second time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from rtt.api.s2s import KEY_PREFIX, fingerprint
from rtt.engines.base import ClaimState
from tests.support.clients import S2S, SERVER
from tests.support.server import running
from tests.support.server import test_settings as settings_for

SYSTEM_FROM = {"id": None, "name": "App Administrator"}
WAIT, HOLD = 0.3, 1.0


def _send(text: str, to: list[str] | None = None) -> dict[str, Any]:
    return {
        **SERVER,
        "service": "messaging",
        "operation": "SYS_SEND_MESSAGE",
        "data": {
            "toProfileIds": to or ["p1"],
            "contentJson": {"text": text},
            "fromJson": SYSTEM_FROM,
        },
    }


async def _count(s2s: S2S) -> int:
    context = {"pagination": {"rowsPerPage": 1, "pageNumber": 1}}
    data = await s2s.ok("messaging", "SYS_GET_MESSAGES_PAGE", {"context": context})
    return int(data["results"]["count"])


async def test_same_key_with_another_body_is_409_and_runs_nothing(s2s):
    """Pins: the same key with a different body answered 200 with the first response (the
    second request silently dropped) instead of a conflict; now 409, nothing run."""
    headers = {"Idempotency-Key": "order-1"}
    status, first = await s2s.raw(_send("first"), headers)
    assert status == 200 and first["status"] == 200
    for other in (_send("second"), _send("first", ["p2"]), {**_send("first"), "x": 1}):
        status, body = await s2s.raw(other, headers)
        assert status == 409, body
        assert set(body) == {"status", "reason_code", "status_message", "severity"}
        assert body["status"] == 409 and body["reason_code"] == 40001
    status, again = await s2s.raw(_send("first"), headers)  # the first body still replays
    assert status == 200 and again == first
    assert await _count(s2s) == 1


async def test_same_key_with_other_bytes_of_equal_json_is_another_request(s2s):
    """Pins: the fingerprint is over the exact body bytes, so a re-encoding is not a retry."""
    headers = {"Idempotency-Key": "bytes"}
    status, _ = await s2s.raw(orjson.dumps(_send("x")), headers)
    assert status == 200
    status, body = await s2s.raw(orjson.dumps(_send("x"), option=orjson.OPT_INDENT_2), headers)
    assert status == 409, body
    assert await _count(s2s) == 1


async def test_duplicate_of_an_attempt_that_never_finishes_waits_then_gets_503_then_runs(
    tmp_path,
):
    """Pins: a duplicate of a first attempt whose node died mid-run (a claim nobody settles or
    renews) must neither run beside it nor hang: it waits idempotency_wait_seconds and answers
    503 + Retry-After; once the dead claim lapses (idempotency_claim_seconds) a retry runs."""
    settings = settings_for(tmp_path, idempotency_wait_seconds=WAIT, idempotency_claim_seconds=HOLD)
    async with running(settings) as node:
        s2s = S2S(node)
        try:
            body = orjson.dumps(_send("orphan"))
            store = node.app.state.node.engine.store
            planted = await store.claim(
                "demo", KEY_PREFIX + "dead", fingerprint("demo", "backend", body), "gone", HOLD
            )
            assert planted == (ClaimState.OWNED, None)
            started = time.monotonic()
            response = await s2s.http.post(
                "/s2sdispatcher", content=body, headers={"Idempotency-Key": "dead"}
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert WAIT - 0.05 <= elapsed <= WAIT + 0.5, elapsed
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["reason_code"] == 50301
            assert await _count(s2s) == 0
            # the dead claim lapses HOLD seconds after it was taken
            await asyncio.sleep(max(0.0, started + HOLD + 0.1 - time.monotonic()))
            status, sent = await s2s.raw(body, {"Idempotency-Key": "dead"})
            assert status == 200 and sent["status"] == 200, sent
            status, again = await s2s.raw(body, {"Idempotency-Key": "dead"})
            assert again == sent
            assert await _count(s2s) == 1
        finally:
            await s2s.close()
