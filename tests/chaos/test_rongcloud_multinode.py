"""The RongCloud door on two `rtt serve --engine redis` nodes sharing one Redis: a signed
request replayed to the other node is refused, and the app's rate is one budget for all nodes.
Signatures are computed here with hashlib from the demo app's secret (tests/support/server)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import httpx

from tests.support.clients import TIMEOUT
from tests.support.nodes import redis_nodes

APP_KEY, APP_SECRET = "demo-key", "rc-secret"
SEND = "/v4/system-channel/message/send"


def _signed() -> dict[str, str]:
    nonce, stamp = uuid.uuid4().hex[:16], str(int(time.time() * 1000))
    signature = hashlib.sha1((APP_SECRET + nonce + stamp).encode()).hexdigest()
    return {"App-Key": APP_KEY, "Nonce": nonce, "Timestamp": stamp, "Signature": signature}


def _body(count: int) -> dict[str, object]:
    tag = uuid.uuid4().hex[:6]
    return {
        "fromUserId": "notices",
        "toUserIds": [f"u{tag}-{i}" for i in range(count)],
        "messageType": "App:Note",
        "content": "x",
    }


async def test_a_nonce_used_on_one_node_is_refused_on_the_other(tmp_path, clean_redis):
    async with (
        redis_nodes(2, tmp_path, clean_redis) as (a, b),
        httpx.AsyncClient(timeout=TIMEOUT) as http,
    ):
        headers = _signed()
        first = await http.post(a.url + SEND, json=_body(1), headers=headers)
        assert first.json()["code"] == 0, first.text
        replay = await http.post(b.url + SEND, json=_body(1), headers=headers)
        assert (replay.status_code, replay.json()["code"]) == (401, 1004)
        fresh = await http.post(b.url + SEND, json=_body(1), headers=_signed())
        assert fresh.json()["code"] == 0


async def test_the_rate_is_one_budget_across_nodes(tmp_path, clean_redis):
    """The demo app allows 100 recipient-messages a second. 100 through node A spend it: 50
    more through node B, whose own process has sent nothing, are refused with 429/1008 until
    the shared bucket refills."""
    async with (
        redis_nodes(2, tmp_path, clean_redis) as (a, b),
        httpx.AsyncClient(timeout=TIMEOUT) as http,
    ):
        spent = await http.post(a.url + SEND, json=_body(100), headers=_signed())
        assert spent.json()["code"] == 0, spent.text
        over = await http.post(b.url + SEND, json=_body(50), headers=_signed())
        assert (over.status_code, over.json()["code"]) == (429, 1008)
        await asyncio.sleep(1.1)
        refilled = await http.post(b.url + SEND, json=_body(50), headers=_signed())
        assert refilled.json()["code"] == 0
