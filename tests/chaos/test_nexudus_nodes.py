"""The Nexudus door on two `rtt serve --engine redis` nodes sharing one Redis: Ids stay unique
whichever node a message is sent through, and a token issued by one node works on the other."""

from __future__ import annotations

import asyncio
import base64

import httpx

from tests.support.clients import S2S, TIMEOUT
from tests.support.nodes import redis_nodes

PATH = "/api/sys/chatusermessages"
ADMIN = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-password").decode()}
PER_NODE = 25


async def _create(http: httpx.AsyncClient, i: int, auth: dict[str, str]) -> int:
    r = await http.post(PATH, json={"FromUserId": i, "ToUsers": [1000 + i]}, headers=auth)
    assert r.status_code == 200, r.text
    return int(r.json()["Value"]["Id"])


async def test_ids_are_unique_across_two_nodes_and_any_node_reads_them(tmp_path, clean_redis):
    async with (
        redis_nodes(2, tmp_path, clean_redis) as (a, b),
        httpx.AsyncClient(base_url=a.url, timeout=TIMEOUT) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=TIMEOUT) as on_b,
    ):
        r = await on_a.post(
            "/api/token",
            data={"grant_type": "password", "username": "admin", "password": "admin-password"},
        )
        assert r.status_code == 200, r.text
        bearer = {"Authorization": f"Bearer {r.json()['access_token']}"}
        s2s_a, s2s_b = S2S(a), S2S(b)
        try:
            created, sent = await asyncio.gather(
                asyncio.gather(
                    *(_create(on_a, i, ADMIN) for i in range(PER_NODE)),
                    *(_create(on_b, i, bearer) for i in range(PER_NODE)),  # a's token on b
                ),
                asyncio.gather(
                    *(s.send(["p1"], {"text": str(i)}) for s in (s2s_a, s2s_b) for i in range(5))
                ),
            )
        finally:
            await s2s_a.close()
            await s2s_b.close()
        assert len(set(created)) == 2 * PER_NODE
        r = await on_b.get(PATH, params={"size": 100}, headers=bearer)
        listed = r.json()
        total = 2 * PER_NODE + len(sent)
        assert listed["TotalItems"] == total
        ids = [rec["Id"] for rec in listed["Records"]]
        assert ids == sorted(ids) == list(range(1, total + 1))  # one counter, no gap, no repeat
        assert set(created) <= set(ids)
        for number in (created[0], created[-1]):
            record = (await on_b.get(f"{PATH}/{number}", headers=ADMIN)).json()
            same = (await on_a.get(f"{PATH}/{number}", headers=bearer)).json()
            assert record == same and record["Id"] == number
