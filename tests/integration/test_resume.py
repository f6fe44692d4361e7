"""Resume (API.md §4.6): replay after `since`, RESYNC, restarts, push outbox for the offline."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import websockets

from tests.support.clients import S2S, TIMEOUT, Rtt, open_socket, socket, token
from tests.support.server import RunningServer, free_port, running
from tests.support.server import test_settings as settings_for


@contextlib.asynccontextmanager
async def dropped(server: RunningServer, profile: str, since: int) -> AsyncIterator[Rtt]:
    """A resumed socket whose connection is cut (no close handshake) when the block ends.

    A client that stops reading mid-replay cannot finish a close handshake behind the frames
    it left unread, so these loops drop the TCP connection, as a lost network would.
    """
    client = await open_socket(server, profile, since=since)
    try:
        yield client
    finally:
        client.ws.transport.abort()
        async with asyncio.timeout(TIMEOUT):
            await client.ws.wait_closed()


async def send_many(s2s: S2S, profile: str, n: int, start: int = 0) -> list[str]:
    return [await s2s.send([profile], {"i": i}) for i in range(start, start + n)]


async def replayed(client: Rtt, count: int) -> list[dict[str, Any]]:
    """The next `count` frames, asserting every one of them is a stream frame."""
    frames = [await client.recv() for _ in range(count)]
    assert all("seq" in f for f in frames), frames
    return frames


async def event(s2s: S2S, to: list[str], event_type: str = "ping") -> None:
    await s2s.ok(
        "event",
        "SYS_SEND_EVENT_TO_PROFILES",
        {"toIds": to, "eventType": event_type, "eventData": {"t": event_type}},
    )


async def wait_offline(s2s: S2S, profile: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while (await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": [profile]}))["online"][
            profile
        ]:
            await asyncio.sleep(0.02)


async def pending(s2s: S2S, profile: str) -> list[dict[str, Any]]:
    return (await s2s.ok("push", "SYS_GET_PENDING", {"profileId": profile, "limit": 1000}))["items"]


# --- replay ----------------------------------------------------------------------------------


async def test_since_replays_then_goes_live(server, s2s):
    """Fails if `since: N` does not replay seq > N in order, then go live with no duplicate."""
    sent = await send_many(s2s, "p1", 5)
    async with socket(server, "p1", since=2) as client:
        assert client.connect["seq"] == 5
        frames = await replayed(client, 3)
        assert [f["seq"] for f in frames] == [3, 4, 5]
        assert [f["data"]["msgId"] for f in frames] == sent[2:]
        assert all(f["service"] == "messaging" and f["operation"] == "INCOMING" for f in frames)
        await client.silent(0.2)
        live = await s2s.send(["p1"], {"i": 5})
        [frame] = await client.pushed(1)
        assert frame["seq"] == 6 and frame["data"]["msgId"] == live
        await client.silent(0.2)


async def test_since_zero_replays_everything(server, s2s):
    """Fails if `since: 0` misses any stored item of any kind."""
    sent = await send_many(s2s, "p1", 3)
    await event(s2s, ["p1"])
    async with socket(server, "p1", since=0) as client:
        frames = await replayed(client, 4)
        assert [f["seq"] for f in frames] == [1, 2, 3, 4]
        assert [f["data"]["msgId"] for f in frames[:3]] == sent
        assert frames[3]["service"] == "event" and frames[3]["data"]["eventType"] == "ping"
        await client.silent(0.2)


async def test_since_latest_replays_nothing(server, s2s):
    """Fails if a caught-up cursor replays anything or sends RESYNC."""
    await send_many(s2s, "p1", 3)
    async with socket(server, "p1", since=3) as client:
        await client.silent(0.3)
        await s2s.send(["p1"])
        [frame] = await client.pushed(1)
        assert frame["seq"] == 4


async def test_since_zero_for_new_profile(server, s2s):
    """Fails if a profile with no stream yet gets RESYNC (or anything) for since 0."""
    async with socket(server, "fresh", since=0) as client:
        assert client.connect["seq"] == 0
        await client.silent(0.3)
        await s2s.send(["fresh"])
        [frame] = await client.pushed(1)
        assert frame["seq"] == 1


async def test_replayed_frames_equal_live_frames(server, s2s):
    """Fails if a replayed item differs from the frame pushed live (any kind, UPDATED/DELETED)."""
    async with socket(server, "p1") as live, socket(server, "p2") as sender:
        msg = await s2s.send(["p1"], {"v": 1})
        await event(s2s, ["p1", "p3"], "e1")
        await s2s.ok(
            "messaging",
            "SYS_UPDATE_MESSAGE",
            {"msgId": msg, "msgVer": 1, "contentJson": {"v": 2}},
        )
        await s2s.ok("messaging", "SYS_DELETE_MESSAGE", {"msgId": msg, "msgVer": 2})
        user = await sender.ok(
            "messaging", "SEND_MESSAGE_SIMPLE", {"toProfileIds": ["p1"], "text": "yo"}
        )
        live_frames = await live.pushed(5)
        async with socket(server, "p1", since=0) as again:
            assert await replayed(again, 5) == live_frames
            await again.silent(0.2)
    kinds = [(f["service"], f["operation"]) for f in live_frames]
    assert kinds == [
        ("messaging", "INCOMING"),
        ("event", "GET_EVENTS"),
        ("messaging", "UPDATED"),
        ("messaging", "DELETED"),
        ("messaging", "INCOMING"),
    ]
    assert live_frames[4]["data"]["msgId"] == user["msgId"]


async def test_updated_and_deleted_are_replayed(server, s2s):
    """Fails if UPDATED/DELETED frames are not stored and replayed to an offline holder."""
    msg = await s2s.send(["p1", "p2"], {"v": 1})
    await s2s.ok(
        "messaging", "SYS_UPDATE_MESSAGE", {"msgId": msg, "msgVer": -1, "contentJson": {"v": 2}}
    )
    await s2s.ok(
        "messaging", "SYS_UPDATE_MESSAGE", {"msgId": msg, "msgVer": 2, "contentJson": {"v": 3}}
    )
    await s2s.ok("messaging", "SYS_DELETE_MESSAGE", {"msgId": msg, "msgVer": -1})
    for profile in ("p1", "p2"):
        async with socket(server, profile, since=0) as client:
            frames = await replayed(client, 4)
            await client.silent(0.2)
        assert [f["seq"] for f in frames] == [1, 2, 3, 4]
        assert [f["operation"] for f in frames] == ["INCOMING", "UPDATED", "UPDATED", "DELETED"]
        assert frames[0]["data"]["message"]["content"] == {"v": 1}
        assert frames[1]["data"]["msgId"] == msg and frames[1]["data"]["msgVer"] == 2
        assert frames[1]["data"]["content"] == {"v": 2}
        assert frames[2]["data"]["msgVer"] == 3 and frames[2]["data"]["content"] == {"v": 3}
        assert frames[3]["data"] == {"msgId": msg, "msgVer": 3}


async def test_updated_reaches_sender_sent_box_holder(server):
    """Fails if a profile holding a message only in its sent box is not told of its update."""
    async with socket(server, "p1") as p1:
        msg = (
            await p1.ok("messaging", "SEND_MESSAGE", {"toProfileIds": ["p2"], "contentJson": {}})
        )["msgId"]
    s2s = S2S(server)
    try:
        await s2s.ok(
            "messaging", "SYS_UPDATE_MESSAGE", {"msgId": msg, "msgVer": 1, "contentJson": {"x": 1}}
        )
    finally:
        await s2s.close()
    async with socket(server, "p1", since=0) as p1:
        [frame] = await replayed(p1, 1)
        assert frame["operation"] == "UPDATED" and frame["data"]["msgId"] == msg


async def test_repeated_resume_has_no_duplicates(server, s2s):
    """Fails if reconnecting with the last seen seq ever repeats or skips an item."""
    await send_many(s2s, "p1", 10)
    seen: list[int] = []
    last = 0
    for take in (3, 1, 4, 2):
        async with socket(server, "p1", since=last) as client:
            frames = await replayed(client, take)
            seen += [f["seq"] for f in frames]
            last = frames[-1]["seq"]
    assert seen == list(range(1, 11))


async def test_resume_while_sender_keeps_sending(server, s2s):
    """Fails if reconnects with since=last seen under concurrent sends lose, repeat or reorder."""
    total = 200
    rng = random.Random(7)
    pusher = asyncio.create_task(send_many(s2s, "p1", total))
    seen: list[int] = []
    connections = 0
    reconnects_while_sending = 0
    last = 0
    try:
        async with asyncio.timeout(60):
            while last < total:
                async with dropped(server, "p1", since=last) as client:
                    connections += 1
                    if not pusher.done():
                        reconnects_while_sending += 1
                    expected = last + 1
                    for _ in range(rng.randint(5, 40)):
                        if last == total:
                            break
                        frame = await client.recv()
                        assert "seq" in frame, frame  # no RESYNC, no stray frame
                        assert frame["seq"] == expected, (frame["seq"], expected)
                        assert frame["data"]["message"]["content"] == {"i": expected - 1}
                        seen.append(frame["seq"])
                        last = expected
                        expected += 1
        await asyncio.wait_for(pusher, TIMEOUT)
    finally:
        pusher.cancel()
    assert seen == list(range(1, total + 1))
    assert connections >= 5 and reconnects_while_sending >= 3, (
        connections,
        reconnects_while_sending,
    )


async def test_resume_with_concurrent_senders_and_live_twin(server):
    """Fails if a resuming device and an always-on device of one profile see different streams."""
    senders = [S2S(server) for _ in range(4)]
    total = 4 * 40
    try:
        async with socket(server, "p1") as twin:
            tasks = [
                asyncio.create_task(send_many(s, "p1", 40, start=k * 1000))
                for k, s in enumerate(senders)
            ]
            resumed: list[dict[str, Any]] = []
            last = 0
            async with asyncio.timeout(60):
                while last < total:
                    async with dropped(server, "p1", since=last) as client:
                        for _ in range(17):
                            if last == total:
                                break
                            frame = await client.recv()
                            assert frame.get("seq") == last + 1, frame
                            resumed.append(frame)
                            last += 1
            await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
            live = await twin.pushed(total)
        assert resumed == live
        contents = sorted(f["data"]["message"]["content"]["i"] for f in live)
        assert contents == sorted(i + k * 1000 for k in range(4) for i in range(40))
    finally:
        for s in senders:
            await s.close()


# --- RESYNC ----------------------------------------------------------------------------------


async def test_since_from_the_future_gets_resync(server, s2s):
    """Fails if a cursor newer than the latest seq is not answered with RESYNC{seq: latest}."""
    await send_many(s2s, "p1", 2)
    async with socket(server, "p1", since=10) as client:
        frame = await client.recv()
        assert frame == {"service": "rtt", "operation": "RESYNC", "data": {"seq": 2}}
        await client.silent(0.2)  # nothing from before the RESYNC position
        await s2s.send(["p1"])
        [live] = await client.pushed(1)
        assert live["seq"] == 3


async def test_cursor_older_than_kept_gets_resync(tmp_path: Path):
    """Fails if a cursor into trimmed history replays a partial stream instead of RESYNC."""
    async with running(settings_for(tmp_path, stream_max_items=3)) as server:
        s2s = S2S(server)
        try:
            await send_many(s2s, "p1", 6)
            await server.node.engine.store.sweep()
            for since in (0, 2):
                async with socket(server, "p1", since=since) as client:
                    frame = await client.recv()
                    assert frame == {"service": "rtt", "operation": "RESYNC", "data": {"seq": 6}}
                    await client.silent(0.2)
            # exactly at the kept boundary: a normal replay, no RESYNC
            async with socket(server, "p1", since=3) as client:
                frames = await replayed(client, 3)
                assert [f["seq"] for f in frames] == [4, 5, 6]
                await client.silent(0.2)
            # after a RESYNC the stream goes on live from the announced position
            async with socket(server, "p1", since=1) as client:
                assert (await client.recv())["operation"] == "RESYNC"
                await s2s.send(["p1"], {"i": 6})
                [live] = await client.pushed(1)
                assert live["seq"] == 7 and live["data"]["message"]["content"] == {"i": 6}
        finally:
            await s2s.close()


async def test_caught_up_cursor_needs_no_kept_history(tmp_path: Path):
    """Fails if a caught-up client gets RESYNC just because old history was swept."""
    async with running(settings_for(tmp_path, stream_max_seconds=0.0)) as server:
        s2s = S2S(server)
        try:
            await send_many(s2s, "p1", 3)
            await asyncio.sleep(0.01)
            await server.node.engine.store.sweep()
            async with socket(server, "p1", since=0) as client:
                assert (await client.recv())["operation"] == "RESYNC"
            async with socket(server, "p1", since=3) as client:
                await client.silent(0.3)
                await s2s.send(["p1"])
                [frame] = await client.pushed(1)
                assert frame["seq"] == 4
        finally:
            await s2s.close()


async def test_foreign_epoch_cursor_gets_resync(server, s2s):
    """Fails if a cursor tagged with another store's epoch is replayed as if it were ours."""
    await send_many(s2s, "p1", 3)
    ws = await asyncio.wait_for(websockets.connect(f"{server.ws_url}?token={token('p1')}"), TIMEOUT)
    try:
        data = {"appId": "demo", "profileId": "p1", "since": 1, "epoch": "another-store"}
        await ws.send(
            orjson.dumps({"service": "rtt", "operation": "CONNECT", "data": data}).decode()
        )
        connect = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert connect["operation"] == "CONNECT"
        assert connect["data"]["epoch"] != "another-store"
        frame = orjson.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert frame == {"service": "rtt", "operation": "RESYNC", "data": {"seq": 3}}
    finally:
        await ws.close()


# --- restart ---------------------------------------------------------------------------------


async def test_offline_profile_gets_everything_after_restart(tmp_path: Path):
    """Fails if stored items, seqs or content are lost when the node restarts on its database."""
    settings = settings_for(tmp_path)
    async with running(settings) as first:
        s2s = S2S(first)
        try:
            sent = await send_many(s2s, "p9", 4)
            await event(s2s, ["p9"], "after")
            await s2s.ok(
                "messaging",
                "SYS_UPDATE_MESSAGE",
                {"msgId": sent[0], "msgVer": 1, "contentJson": {"i": "edited"}},
            )
            async with socket(first, "p9", since=0) as before:
                frames_before = await replayed(before, 6)
                epoch = before.connect.get("epoch")
        finally:
            await s2s.close()
    async with (
        running(settings.model_copy(update={"port": free_port()})) as second,
        socket(second, "p9", since=0) as client,
    ):
        assert client.connect["seq"] == 6
        assert client.connect.get("epoch") == epoch
        frames = await replayed(client, 6)
        await client.silent(0.2)
        assert frames == frames_before
        assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5, 6]
        assert [f["data"]["msgId"] for f in frames[:4]] == sent
        assert frames[5]["operation"] == "UPDATED"
        got = await client.ok("messaging", "GET_MESSAGES", {"msgbox": "inbox", "msgIds": [sent[0]]})
        assert got["items"][0]["message"]["content"] == {"i": "edited"}
        s2s = S2S(second)
        try:
            await s2s.send(["p9"])
        finally:
            await s2s.close()
        [live] = await client.pushed(1)
        assert live["seq"] == 7  # the counter survived the restart


async def test_connected_client_resumes_across_restart(tmp_path: Path):
    """Fails if a client dropped by a restart cannot resume from its last seq without gap/dup."""
    settings = settings_for(tmp_path)
    async with running(settings) as first:
        s2s = S2S(first)
        client = await open_socket(first, "p1")
        try:
            await send_many(s2s, "p1", 3)
            last = (await client.pushed(3))[-1]["seq"]
        finally:
            await s2s.close()
    # the stop closed the socket
    async with asyncio.timeout(TIMEOUT):
        await client.ws.wait_closed()
    async with running(settings.model_copy(update={"port": free_port()})) as second:
        s2s = S2S(second)
        try:
            await send_many(s2s, "p1", 2, start=3)
            async with socket(second, "p1", since=last) as again:
                frames = await replayed(again, 2)
                await again.silent(0.2)
        finally:
            await s2s.close()
    assert [f["seq"] for f in frames] == [4, 5]
    assert [f["data"]["message"]["content"] for f in frames] == [{"i": 3}, {"i": 4}]


# --- push outbox -----------------------------------------------------------------------------


async def test_offline_recipients_get_push_entries(server, s2s):
    """Fails if an offline recipient has no push outbox entry or a connected one has one."""
    async with socket(server, "on") as online:
        msg = await s2s.send(["on", "off"], {"text": "hello there"})
        await online.pushed(1)
        assert await pending(s2s, "on") == []
        [entry] = await pending(s2s, "off")
        assert entry["kind"] == "message" and entry["ref"] == msg
        assert entry["profileId"] == "off"
        assert entry["title"] == "App Administrator" and entry["body"] == "hello there"
        assert entry["data"] == {"msgId": msg}
        assert entry["attempts"] == 0 and isinstance(entry["createdAt"], int)
        assert entry["pushId"]

        await event(s2s, ["on", "off"], "invite")
        await online.pushed(1)
        assert await pending(s2s, "on") == []
        entries = await pending(s2s, "off")
        assert [e["kind"] for e in entries] == ["message", "event"]
        assert entries[1]["title"] == "invite"

        user = await online.ok(
            "messaging", "SEND_MESSAGE_SIMPLE", {"toProfileIds": ["off"], "text": "ping"}
        )
        entries = await pending(s2s, "off")
        assert [e["ref"] for e in entries][-1] == user["msgId"]
        assert entries[-1]["title"] == "on" and entries[-1]["body"] == "ping"
        assert await pending(s2s, "on") == []  # the sender gets no notification for its send


async def test_push_entries_follow_presence(server, s2s):
    """Fails if a profile that disconnected is not notified, or one that connected still is."""
    async with socket(server, "p1") as client:
        await s2s.send(["p1"])
        await client.pushed(1)
    await wait_offline(s2s, "p1")
    msg = await s2s.send(["p1"])
    entries = await pending(s2s, "p1")
    assert [e["ref"] for e in entries] == [msg]
    async with socket(server, "p1", since=1) as client:
        [frame] = await replayed(client, 1)
        assert frame["data"]["msgId"] == msg
        await s2s.send(["p1"])
        await client.pushed(1)
        assert len(await pending(s2s, "p1")) == 1  # nothing new while connected


async def test_second_device_keeps_profile_online(server, s2s):
    """Fails if closing one of two sockets of a profile makes it count as offline."""
    async with socket(server, "p1") as a:
        async with socket(server, "p1") as b:
            await b.ok("messaging", "GET_MESSAGE_BOXES")
        await asyncio.sleep(0.1)
        online = await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["p1"]})
        assert online == {"online": {"p1": True}}
        await s2s.send(["p1"])
        await a.pushed(1)
        assert await pending(s2s, "p1") == []


async def test_pending_is_oldest_first_across_profiles(server, s2s):
    """Fails if SYS_GET_PENDING without profileId is not the whole outbox, oldest first."""
    first = await s2s.send(["a"])
    second = await s2s.send(["b", "a"])
    everything = (await s2s.ok("push", "SYS_GET_PENDING", {"limit": 10}))["items"]
    assert [(e["profileId"], e["ref"]) for e in everything] == [
        ("a", first),
        ("b", second),
        ("a", second),
    ]
    limited = (await s2s.ok("push", "SYS_GET_PENDING", {"limit": 2}))["items"]
    assert limited == everything[:2]


async def test_pending_says_how_many_entries_retention_dropped(tmp_path: Path):
    """Pins: the push outbox grew without bound; now the sweep keeps RTT_OUTBOX_MAX_ENTRIES
    per app, oldest dropped first, and SYS_GET_PENDING counts what was dropped."""
    async with running(settings_for(tmp_path, outbox_max_entries=2)) as server:
        s2s = S2S(server)
        try:
            sent = [await s2s.send(["a"]) for _ in range(5)]
            reply = await s2s.ok("push", "SYS_GET_PENDING", {"limit": 10})
            assert (len(reply["items"]), reply["dropped"]) == (5, 0)
            await server.node.engine.store.sweep()
            reply = await s2s.ok("push", "SYS_GET_PENDING", {"limit": 10})
            assert [e["ref"] for e in reply["items"]] == sent[3:]
            assert reply["dropped"] == 3
        finally:
            await s2s.close()
