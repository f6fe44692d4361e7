"""rtt.client against real nodes on loopback: connect, stream, requests, heartbeat, token
refresh, failover, resume, RESYNC, and a scripted peer that sends duplicates and gaps.

The restart and failover storms (tests/chaos/test_restart_storm.py) prove it under faults with
thousands of clients; these pin each behaviour on its own.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve

from rtt.client import (
    Client,
    Connected,
    Disconnected,
    Frame,
    Pushed,
    Refused,
    RequestError,
    Resync,
)
from tests.support.clients import S2S, token
from tests.support.server import RunningServer, free_port, running
from tests.support.server import test_settings as settings_for

pytestmark = pytest.mark.timeout(30)


async def next_frame(client: Client, timeout: float = 5.0) -> Frame:
    async with asyncio.timeout(timeout):
        return await anext(client)


async def pushed(client: Client, count: int, timeout: float = 5.0) -> list[Pushed]:
    """The next `count` stream frames; anything else in between must be lifecycle frames."""
    out: list[Pushed] = []
    while len(out) < count:
        frame = await next_frame(client, timeout)
        if isinstance(frame, Pushed):
            out.append(frame)
    return out


async def test_connects_streams_and_answers_requests(server: RunningServer, s2s: S2S) -> None:
    async with Client(server.ws_url, token("p1")) as client:
        hello = await next_frame(client)
        assert isinstance(hello, Connected) and hello.resumed is False and hello.seq == 0
        assert hello.heartbeat_seconds == 5.0 and hello.epoch and hello.url == server.ws_url
        sent = [await s2s.send(["p1"], {"text": f"m{i}"}) for i in range(3)]
        frames = await pushed(client, 3)
        assert [f.seq for f in frames] == [1, 2, 3]
        assert [f.data["msgId"] for f in frames] == sent
        assert frames[0].service == "messaging" and frames[0].operation == "INCOMING"
        counts = await client.request("messaging", "GET_MESSAGE_COUNTS")
        assert counts["inbox"]["total"] == 3, counts
        with pytest.raises(RequestError) as refused:
            await client.request("messaging", "NO_SUCH_OPERATION", {})
        assert refused.value.status == 400 and refused.value.reason_code, refused.value.reply
        assert client.last_seq == 3 and client.stats.connects == 1
    # closed: the iteration ends once drained, the close itself its last frame
    assert [frame async for frame in client] == [Disconnected(server.ws_url, 1000, "", None)]


async def test_heartbeats_keep_an_idle_connection_open(tmp_path: Path) -> None:
    """The node closes a socket silent for twice heartbeatSeconds (1 s here); the client beats
    every heartbeatSeconds, so 2.5 s of idleness costs it no reconnect."""
    async with (
        running(settings_for(tmp_path, heartbeat_seconds=1.0)) as server,
        Client(server.ws_url, token("p1")) as client,
    ):
        hello = await next_frame(client)
        assert isinstance(hello, Connected) and hello.heartbeat_seconds == 1.0
        await asyncio.sleep(2.5)
        assert client.stats.connects == 1 and client.url == server.ws_url
        assert await client.request("messaging", "GET_MESSAGE_BOXES") is not None


async def test_a_token_callable_gets_a_fresh_token_after_a_refusal(
    server: RunningServer, s2s: S2S
) -> None:
    minted: list[str] = []

    async def fresh() -> str:
        minted.append(token("p1", ttl=-10 if not minted else 600))  # the first one expired
        return minted[-1]

    async with Client(server.ws_url, fresh, backoff_base=0.01) as client:
        assert len(minted) == 2 and client.stats.failed_attempts == 1
        msg_id = await s2s.send(["p1"])
        [frame] = await pushed(client, 1)
        assert frame.data["msgId"] == msg_id


async def test_a_bad_static_token_is_refused_for_good(server: RunningServer) -> None:
    client = Client(server.ws_url, token("p1", ttl=-10), backoff_base=0.01)
    with pytest.raises(Refused) as refused:
        await client.connected(5.0)
    assert refused.value.reason_code == 40304 and client.stats.failed_attempts == 1
    with pytest.raises(Refused):
        await next_frame(client)
    await client.close()


async def test_it_tries_the_next_url_when_one_is_down(server: RunningServer) -> None:
    down = f"ws://127.0.0.1:{free_port()}/rtt"
    async with Client([down, server.ws_url], token("p1"), backoff_base=0.01) as client:
        assert client.url == server.ws_url and client.stats.failed_attempts == 1


async def test_since_replays_what_was_missed_exactly_once(server: RunningServer, s2s: S2S) -> None:
    sent = [await s2s.send(["p1"]) for _ in range(4)]
    async with Client(server.ws_url, token("p1"), since=1) as client:
        hello = await next_frame(client)
        assert isinstance(hello, Connected) and hello.resumed and hello.seq == 4
        frames = await pushed(client, 3)
        assert [f.seq for f in frames] == [2, 3, 4]
        assert [f.data["msgId"] for f in frames] == sent[1:]
        assert client.stats.duplicates == 0 and client.stats.gaps == 0


async def test_a_cursor_from_another_epoch_is_told_to_resync(
    server: RunningServer, s2s: S2S
) -> None:
    for _ in range(2):
        await s2s.send(["p1"])
    async with Client(server.ws_url, token("p1"), since=1, epoch="gone") as client:
        assert isinstance(await next_frame(client), Connected)
        resync = await next_frame(client)
        assert resync == Resync(2) and client.stats.resyncs == 1 and client.last_seq == 2
        msg_id = await s2s.send(["p1"])
        [frame] = await pushed(client, 1)
        assert frame.seq == 3 and frame.data["msgId"] == msg_id


async def test_a_node_restart_is_resumed_without_loss(tmp_path: Path) -> None:
    """The node goes away (DISCONNECT 50302, close 1012) and comes back on the same database:
    the client reconnects by itself and gets what was sent while it was away, once."""
    settings = settings_for(tmp_path)
    server = await RunningServer(settings).start()
    client = Client(server.ws_url, token("p1"), backoff_base=0.2, backoff_cap=0.5)
    try:
        await client.connected(5.0)
        s2s = S2S(server)
        before = await s2s.send(["p1"])
        await s2s.close()
        [frame] = await pushed(client, 1)
        assert frame.data["msgId"] == before
        await server.stop()
        ended = await next_frame(client)
        assert isinstance(ended, Disconnected) and ended.code == 1012, ended
        assert ended.disconnect == {"reason": "server restarting; reconnect", "reasonCode": 50302}
        server = await RunningServer(settings).start()
        s2s = S2S(server)
        during = [await s2s.send(["p1"]) for _ in range(3)]  # likely before it is back
        hello = await next_frame(client)
        assert isinstance(hello, Connected) and hello.resumed
        after = await s2s.send(["p1"])
        await s2s.close()
        frames = await pushed(client, 4)
        assert [f.seq for f in frames] == [2, 3, 4, 5]
        assert [f.data["msgId"] for f in frames] == [*during, after]
        assert client.stats.duplicates == 0 and client.stats.connects == 2
    finally:
        await client.close()
        await server.stop()


async def test_a_slow_consumer_loses_nothing(server: RunningServer, s2s: S2S) -> None:
    """The queue holds 2 frames: the client stops reading the socket meanwhile, and every
    frame still arrives, in order, once the app reads."""
    async with Client(server.ws_url, token("p1"), queue_size=2) as client:
        sent = [await s2s.send(["p1"]) for _ in range(30)]
        await asyncio.sleep(0.2)
        frames = await pushed(client, 30)
        assert [f.seq for f in frames] == list(range(1, 31))
        assert [f.data["msgId"] for f in frames] == sent


# --- a scripted peer: what a correct node never does, the client still survives ------------


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A WebSocket peer that speaks just enough RTT: its first connection answers CONNECT and
    pushes seq 1, 1 again (a duplicate), then 3 (a gap); later connections replay after the
    `since` they are given, up to seq 4. Yields its URL and every CONNECT data it received."""
    connects: list[dict[str, Any]] = []

    def frame(seq: int) -> str:
        body = {"seq": seq, "service": "messaging", "operation": "INCOMING", "data": {"n": seq}}
        return orjson.dumps(body).decode()

    async def handler(ws: ServerConnection) -> None:
        request = orjson.loads(await ws.recv())
        connects.append(request["data"])
        hello = {"cxId": "x", "heartbeatSeconds": 5, "seq": 4, "epoch": "e1"}
        await ws.send(orjson.dumps({"service": "rtt", "operation": "CONNECT", "data": hello}))
        if len(connects) == 1:
            for seq in (1, 1, 3):
                await ws.send(frame(seq))
        else:
            for seq in range(request["data"]["since"] + 1, 5):
                await ws.send(frame(seq))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as peer:
        port = next(iter(peer.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/rtt", connects


async def test_duplicates_are_dropped_and_a_gap_resumes(scripted) -> None:
    url, connects = scripted
    async with Client(url, "any-token", since=0, backoff_base=0.01) as client:
        frames = await pushed(client, 4)
        assert [f.seq for f in frames] == [1, 2, 3, 4]
        assert client.stats.duplicates == 1 and client.stats.gaps == 1
        assert client.stats.connects == 2
    assert connects[0] == {"auth": {"token": "any-token"}, "since": 0}
    assert connects[1] == {"auth": {"token": "any-token"}, "since": 1, "epoch": "e1"}


async def test_the_readme_example_receives_a_message(server: RunningServer, s2s: S2S, tmp_path):
    """The README's Python client example, run as written (its URL from RTT_URL), prints the
    first message sent to its profile and exits."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Python client", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(example.strip().splitlines()) <= 15
    (tmp_path / "client.py").write_text(example)
    (tmp_path / "token.txt").write_text(token("p1") + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "client.py",
        cwd=tmp_path,
        env={**os.environ, "RTT_URL": server.ws_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(10):
            while server.node.hub.counts() != (1, 1):
                assert process.returncode is None, await process.stderr.read()
                await asyncio.sleep(0.05)
        await s2s.send(["p1"], {"text": "hello"})
        async with asyncio.timeout(10):
            out, err = await process.communicate()
        assert process.returncode == 0, err
        assert out.decode() == "1 {'text': 'hello'}\n"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
