"""Piggybacked events on /dispatcherv2 over real HTTP, on both engines: off by default; with
`features.piggyback_events` each session is handed each stored event once, in the order stored,
bounded per response with the rest on the next packets; deleted events never; a resent packet
answers its recorded events; concurrent packets and two redis nodes never hand one twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rtt.settings import Settings
from tests.integration.test_dispatcher import Client, anonymous, op
from tests.support.clients import S2S
from tests.support.server import RunningServer, running
from tests.support.server import test_apps as apps_for
from tests.support.server import test_settings as settings_for

pytestmark = pytest.mark.timeout(60)

EVENT_FIELDS = {"evId", "eventType", "fromPlayerId", "toPlayerId", "createdAt", "eventData"}


def piggybacking(tmp: Path, **overrides: object) -> Settings:
    """The test settings with the demo app's piggyback_events switch on."""
    apps = apps_for(tmp)
    demo = apps["demo"]
    features = demo.features.model_copy(update={"piggyback_events": True})
    apps["demo"] = demo.model_copy(update={"features": features})
    return settings_for(tmp, apps=apps, **overrides)


async def bundle(client: Client, *messages: dict[str, Any]) -> dict[str, Any]:
    """One packet's whole answer: packetId, responses and, maybe, events."""
    r = await client.post(client.packet_bytes(*messages))
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    assert all(response["status"] == 200 for response in answer["responses"]), answer
    return answer


async def handed(client: Client) -> list[dict[str, Any]]:
    """The events a heartbeat packet is handed."""
    events: list[dict[str, Any]] = (await bundle(client, op("heartbeat", "READ"))).get("events", [])
    return events


async def send_event(s2s: S2S, profile: str, n: int, pad: str = "") -> None:
    data = {"n": n, "pad": pad} if pad else {"n": n}
    sent = await s2s.ok(
        "event",
        "SYS_SEND_EVENT_TO_PROFILES",
        {"toIds": [profile], "eventType": "tick", "eventData": data},
    )
    assert sent["sentCount"] == 1


async def signed_in(server: RunningServer, anonymous_id: str) -> tuple[Client, str]:
    client = Client(server)
    response = await client.authenticate(anonymous_id)
    assert response["status"] == 200, response
    return client, str(response["data"]["profileId"])


async def test_events_are_not_piggybacked_unless_the_app_says_so(server, s2s):
    """Fails if an app without the switch gets an `events` array (the default is off)."""
    client, profile = await signed_in(server, "off-1")
    await send_event(s2s, profile, 1)
    answer = await bundle(client, op("event", "GET_EVENTS"))
    await client.close()
    assert "events" not in answer
    assert len(answer["responses"][0]["data"]["incoming_events"]) == 1


async def test_each_event_reaches_a_session_once_and_stays_in_the_mailbox(tmp_path: Path):
    """Fails if a stored event is not handed on the next packet in GET_EVENTS's item shape,
    is handed again on a later packet, or leaves the mailbox by being handed."""
    async with running(piggybacking(tmp_path)) as server:
        s2s = S2S(server)
        client, profile = await signed_in(server, "once-1")
        assert await handed(client) == []
        await send_event(s2s, profile, 1)
        [event] = await handed(client)
        assert set(event) == EVENT_FIELDS
        assert (event["eventType"], event["eventData"]) == ("tick", {"n": 1})
        assert (event["fromPlayerId"], event["toPlayerId"]) == (None, profile)
        assert await handed(client) == []
        answer = await bundle(client, op("event", "GET_EVENTS"))
        assert "events" not in answer
        assert answer["responses"][0]["data"]["incoming_events"] == [event]
        await client.close()
        await s2s.close()


async def test_every_session_has_its_own_cursor_from_the_oldest_kept_event(tmp_path: Path):
    """Fails if a new session of the profile is not handed the mailbox on its sign-in
    response, or if handing it to one session hides or repeats events for another."""
    async with running(piggybacking(tmp_path)) as server:
        s2s = S2S(server)
        first, profile = await signed_in(server, "two-sessions")
        for n in (1, 2):
            await send_event(s2s, profile, n)
        assert [e["eventData"]["n"] for e in await handed(first)] == [1, 2]
        second = Client(server)
        second.packet = 5  # not the bytes of the first sign-in, which would answer its session
        answer = await bundle(second, anonymous("two-sessions"))
        second.session = answer["responses"][0]["data"]["sessionId"]
        assert [e["eventData"]["n"] for e in answer["events"]] == [1, 2]
        assert await handed(first) == [] and await handed(second) == []
        await send_event(s2s, profile, 3)
        assert [e["eventData"]["n"] for e in await handed(second)] == [3]
        assert [e["eventData"]["n"] for e in await handed(first)] == [3]
        for client in (first, second, s2s):
            await client.close()


async def test_deleted_events_are_never_handed(tmp_path: Path):
    """Fails if an event the client deleted is piggybacked afterwards (a sign-in packet that
    deletes one is handed only the one left)."""
    async with running(piggybacking(tmp_path)) as server:
        s2s = S2S(server)
        first, profile = await signed_in(server, "deleter")
        for n in (1, 2):
            await send_event(s2s, profile, n)
        answer = await bundle(first, op("event", "GET_EVENTS"))
        ids = [e["evId"] for e in answer["responses"][0]["data"]["incoming_events"]]
        assert [e["evId"] for e in answer["events"]] == ids
        second = Client(server)
        answer = await bundle(
            second, anonymous("deleter"), op("event", "DELETE_INCOMING", {"evId": ids[0]})
        )
        assert answer["responses"][1]["data"] == {"requested": 1, "actual": 1}
        assert [e["evId"] for e in answer["events"]] == ids[1:]
        for client in (first, second, s2s):
            await client.close()


async def test_a_response_carries_a_bounded_count_and_the_rest_follow(tmp_path: Path):
    """Fails if a response carries more than RTT_PIGGYBACK_MAX_EVENTS events, or if the rest
    are not handed, in the order stored, on the next packets."""
    async with running(piggybacking(tmp_path, piggyback_max_events=3)) as server:
        s2s = S2S(server)
        client, profile = await signed_in(server, "many")
        for n in range(7):
            await send_event(s2s, profile, n)
        sizes, seen = [], []
        for _ in range(4):
            events = await handed(client)
            sizes.append(len(events))
            seen += [e["eventData"]["n"] for e in events]
        assert sizes == [3, 3, 1, 0]
        assert seen == list(range(7))
        await client.close()
        await s2s.close()


async def test_a_response_carries_bounded_bytes_but_at_least_one_event(tmp_path: Path):
    """Fails if events past RTT_PIGGYBACK_MAX_BYTES share a response, or if an event larger
    than the budget is never handed."""
    async with running(piggybacking(tmp_path, piggyback_max_bytes=1024)) as server:
        s2s = S2S(server)
        client, profile = await signed_in(server, "bytes")
        await send_event(s2s, profile, 0, pad="x" * 300)
        await send_event(s2s, profile, 1, pad="x" * 300)
        await send_event(s2s, profile, 2, pad="x" * 3000)
        batches = [[e["eventData"]["n"] for e in await handed(client)] for _ in range(4)]
        assert batches == [[0], [1], [2], []]
        await client.close()
        await s2s.close()


async def test_a_resent_packet_answers_its_recorded_events(tmp_path: Path):
    """Fails if the resend of a packet (same packetId) is not answered byte for byte as the
    first time, events included, or if it takes events meant for the next packet."""
    async with running(piggybacking(tmp_path)) as server:
        s2s = S2S(server)
        client, profile = await signed_in(server, "resend")
        await send_event(s2s, profile, 1)
        body = client.packet_bytes(op("heartbeat", "READ"))
        first = await client.post(body)
        assert [e["eventData"]["n"] for e in first.json()["events"]] == [1]
        await send_event(s2s, profile, 2)
        again = await client.post(body)
        assert again.status_code == 200 and again.content == first.content
        assert [e["eventData"]["n"] for e in await handed(client)] == [2]
        await client.close()
        await s2s.close()


async def test_concurrent_packets_of_one_session_never_share_an_event(tmp_path: Path):
    """Fails if two packets of a session running at once are handed the same event, or if
    any event is lost between them."""
    async with running(piggybacking(tmp_path, piggyback_max_events=4)) as server:
        s2s = S2S(server)
        client, profile = await signed_in(server, "racer")
        for n in range(24):
            await send_event(s2s, profile, n)
        batches = await asyncio.gather(*(handed(client) for _ in range(8)))
        seen = [e["eventData"]["n"] for batch in batches for e in batch]
        while events := await handed(client):
            seen += [e["eventData"]["n"] for e in events]
        assert sorted(seen) == list(range(24))
        await client.close()
        await s2s.close()


async def test_a_session_moving_between_nodes_is_handed_each_event_once(
    tmp_path: Path, engine: str
):
    """Fails if packets of one session landing on alternate nodes (redis: two nodes on one
    Redis; local: its one node) repeat or lose an event sent through either node."""
    settings = piggybacking(tmp_path, piggyback_max_events=2)
    async with running(settings) as one:
        if engine == "redis":
            other_settings = settings.model_copy(update={"port": settings_for(tmp_path).port})
            nodes = [one, await RunningServer(other_settings).start()]
        else:
            nodes = [one]
        try:
            clients = [Client(node) for node in nodes]
            senders = [S2S(node) for node in nodes]
            reply = await clients[0].authenticate("traveller")
            profile = reply["data"]["profileId"]
            for c in clients:
                c.session, c.packet = clients[0].session, 100
            seen: list[int] = []
            for n in range(10):
                await send_event(senders[n % len(senders)], profile, n)
                client = clients[n % len(clients)]
                client.packet = 100 + n  # one packet counter for the session, as the library
                seen += [e["eventData"]["n"] for e in await handed(client)]
            assert seen == list(range(10))
            for c in (*clients, *senders):
                await c.close()
        finally:
            if len(nodes) > 1:
                await nodes[1].stop()
