"""Large replies over real sockets: every read of many items is cut at RTT_REPLY_MAX_BYTES and
continues exactly where it stopped, and readers that never read hold up nobody."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from loadtest.hostile_readers import Target, measure
from loadtest.node import NodeProcess, running
from tests.support import server as support
from tests.support.clients import S2S, SECRETS, SERVERS, Rtt, socket
from tests.support.server import APPS_TOML, RunningServer

BIG = {"text": "x" * 130_000}  # ~128 KB serialized, under the default 131072 limit
MESSAGES = 40  # a 100-row page of them is 5 MB: five times the socket's 1 MiB budget


async def _reply(client: Rtt, operation: str, data: Any, service: str = "messaging") -> Any:
    """A request's reply data, asked again as a polite client does while rate limited (429)."""
    while (reply := await client.request(service, operation, data))["status"] == 429:
        await asyncio.sleep(0.25)
    assert reply["status"] == 200, reply
    return reply["data"]


async def _fill(s2s: S2S, profile: str, count: int) -> list[str]:
    return [await s2s.send([profile], BIG) for _ in range(count)]


async def test_a_reader_at_loopback_speed_pages_through_big_messages_exactly_once(
    server: RunningServer, s2s: S2S
):
    """Pins: a client that reads continuously and asks for 100-row pages of 128 KB messages was
    closed with 4003 (a 12.8 MB reply written at once). Now each page stops at the reply budget
    with moreAfter, and following the context reaches every message exactly once."""
    sent = await _fill(s2s, "reader", MESSAGES)
    budget = server.settings.reply_max_bytes
    seen: list[str] = []
    async with socket(server, "reader") as client:
        context = {"pagination": {"rowsPerPage": 100, "pageNumber": 1}}
        data = await _reply(client, "GET_MESSAGES_PAGE", {"context": context})
        while True:
            items = data["results"]["items"]
            assert 1 <= len(items) < 100 and data["results"]["count"] == MESSAGES
            assert sum(len(i["message"]["content"]["text"]) for i in items) <= budget
            seen += [i["msgId"] for i in items]
            if not data["results"]["moreAfter"]:
                break
            offset = {"context": data["context"], "pageOffset": 1}
            data = await _reply(client, "GET_MESSAGES_PAGE_OFFSET", offset)
        await _reply(client, "GET_MESSAGE_COUNTS", {})  # still open: never closed as slow
    assert seen == sent[::-1]


async def test_reads_by_id_and_events_are_cut_and_continue(server: RunningServer, s2s: S2S):
    """Pins: GET_MESSAGES of 40 ids of 128 KB messages and GET_EVENTS of 40 big events answered
    one reply of 5 MB (closed as too slow); now each reply stops at the budget, says moreAfter,
    and asking on (the ids not returned yet, or the events' context) reaches each item once."""
    sent = await _fill(s2s, "reader", MESSAGES)
    for n in range(MESSAGES):
        await s2s.ok(
            "event",
            "SYS_SEND_EVENT_TO_PROFILES",
            {"toIds": ["reader"], "eventType": f"e{n}", "eventData": BIG},
        )
    async with socket(server, "reader") as client:
        got: list[str] = []
        while len(got) < MESSAGES:
            ask = sent[len(got) :]
            data = await _reply(client, "GET_MESSAGES", {"msgbox": "inbox", "msgIds": ask})
            got += [i["msgId"] for i in data["items"]]
            assert data.get("moreAfter", False) is (len(got) < MESSAGES)
            assert data["requested"] == len(ask) and data["actual"] == len(data["items"])
        assert got == sent
        types: list[str] = []
        request: dict[str, Any] = {}
        while True:
            data = await _reply(client, "GET_EVENTS", request, service="event")
            types += [e["eventType"] for e in data["incoming_events"]]
            if not data.get("moreAfter"):
                break
            request = {"context": data["context"]}
        assert types == [f"e{n}" for n in range(MESSAGES)]
        await _reply(client, "GET_MESSAGE_COUNTS", {})


async def test_a_forged_events_context_is_refused(server: RunningServer):
    """Pins: GET_EVENTS with a context that is not one it handed out answers 400/40383."""
    async with socket(server, "reader") as client:
        reply = await client.request("event", "GET_EVENTS", {"context": "bm90IG91cnM"})
        assert reply["status"] == 400 and reply["reason_code"] == 40383


@pytest.mark.timeout(120)
async def test_readers_that_never_read_hold_up_no_send(tmp_path: Path):
    """Pins: 300 sockets that each asked for one page of 128 KB messages and read nothing
    stalled the local node's database thread for 33 s (sends waited, +360 MB) and on Redis
    exhausted its pool (503s, /readyz 503, +1.46 GB). Now reads take their turn at the node's
    gate and read only what fits the budget: sends keep completing, /readyz stays 200 and the
    node's RSS stays flat. (The tight figures are loadtest/hostile_readers.py's.)"""
    env = {"RTT_ENGINE": support.ENGINE["engine"]}
    if support.ENGINE["redis_url"]:
        env["RTT_REDIS_URL"] = support.ENGINE["redis_url"]
    with running(NodeProcess(APPS_TOML, directory=tmp_path, env=env)) as node:
        target = Target(
            node.http, node.host, node.port, node.pid, "demo", SECRETS["demo"], "backend",
            SERVERS["demo"],
        )  # fmt: skip
        result = await measure(target, readers=200, messages=MESSAGES, sends=50, timeout=20)
    print(f"\n{support.ENGINE['engine']}: {result}")
    assert result["readers_served"] == 200, result
    assert result["failed_sends"] == 0 and result["readyz_not_200"] == 0, result
    assert result["under_attack"]["max_ms"] < 1000, result
    rss = result["rss_mb"]
    assert rss["peak"] - rss["before"] < 100, rss


async def test_client_reads_take_turns_at_the_node_gate_and_nothing_else_waits(
    server: RunningServer, s2s: S2S
):
    """Pins: client reads of many items run at most RTT_READS_IN_FLIGHT at a time, the others
    waiting their turn in arrival order, while sends and other requests never wait behind them."""
    gate = server.node.reads
    held = server.settings.reads_in_flight
    for _ in range(held):
        await gate.acquire()  # every turn taken, as by reads in progress
    try:
        async with socket(server, "p1") as a, socket(server, "p2") as b, socket(server, "p3") as c:
            answered: list[str] = []
            first = asyncio.create_task(
                a.request("messaging", "GET_MESSAGES_PAGE", {"context": {}})
            )
            first.add_done_callback(lambda _: answered.append("first"))
            await asyncio.sleep(0.05)
            second = asyncio.create_task(b.request("event", "GET_EVENTS", {}))
            second.add_done_callback(lambda _: answered.append("second"))
            await asyncio.sleep(0.2)
            assert answered == []
            await asyncio.wait_for(s2s.send(["p3"]), 1)  # writes never wait at the gate
            assert (await c.ok("messaging", "GET_MESSAGE_COUNTS"))["inbox"]["total"] == 1
            gate.release()  # one turn frees up: the reads go through it one after the other
            held -= 1
            replies = await asyncio.wait_for(asyncio.gather(first, second), 2)
            assert answered == ["first", "second"]
            assert [r["status"] for r in replies] == [200, 200]
    finally:
        for _ in range(held):
            gate.release()
