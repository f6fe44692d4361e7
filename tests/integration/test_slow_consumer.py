"""A client that stops reading is cut off alone, and loses nothing once it resumes."""

from __future__ import annotations

import asyncio

import orjson
import websockets

from tests.support.clients import S2S, socket, token
from tests.support.server import running
from tests.support.server import test_settings as settings_for
from tests.support.waits import eventually

BIG = {"text": "x" * 100_000}
COUNT = 120  # 12 MB: more than the kernel's socket buffers and the session's limit together


async def test_slow_consumer_is_closed_without_delaying_others_and_resumes_gap_free(tmp_path):
    """Fails if a socket that stops reading buffers without bound, holds up a healthy one, or
    loses items when it comes back with `since`."""
    settings = settings_for(tmp_path, socket_buffer_bytes=256 * 1024, reply_max_bytes=64 * 1024)
    async with running(settings) as server:
        s2s = S2S(server)
        stalled = await websockets.connect(
            f"{server.ws_url}?token={token('slow')}", max_queue=1, max_size=2**22
        )
        try:
            await stalled.send('{"service":"rtt","operation":"CONNECT","data":{}}')
            await asyncio.wait_for(stalled.recv(), 5)
            sent = [await s2s.send(["slow"], BIG) for _ in range(COUNT)]
            async with socket(server, "fast") as fast:  # the stalled socket holds nobody up
                quick = await s2s.send(["fast"])
                [frame] = await fast.pushed(1, timeout=1)
                assert frame["data"]["msgId"] == quick

            async def online() -> bool:
                data = await s2s.ok("presence", "SYS_GET_ONLINE", {"profileIds": ["slow"]})
                return bool(data["online"]["slow"])

            await eventually(online, lambda on: on is False, timeout=10, what="slow cut off")
        finally:
            stalled.transport.abort()  # never read: don't wait for a closing handshake
        async with socket(server, "slow", since=0) as again:
            replayed = await again.pushed(COUNT, timeout=30)
            assert [f["seq"] for f in replayed] == list(range(1, COUNT + 1))
            assert [f["data"]["msgId"] for f in replayed] == sent
        await s2s.close()


async def test_replayed_frames_are_parseable_json(server, s2s):
    """Fails if the per-recipient splice ever yields invalid JSON on replay."""
    await s2s.send(["p1", "p2"], {"q": '"quoted" \\ and \u00e9'})
    async with socket(server, "p2", since=0) as client:
        [frame] = await client.pushed(1)
        assert frame["data"]["message"]["to"] == ["p2"]
        assert orjson.loads(orjson.dumps(frame))["data"]["message"]["content"]["q"].startswith('"')
