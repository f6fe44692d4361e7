"""Sessions healing through Redis trouble: an epoch change mid-replay, and a pub/sub blip with
hundreds of sockets at once. Real redis-server processes, loopback only."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio

from tests.chaos.test_redis_faults import _epoch, _send_body, _send_retrying, _settings
from tests.chaos.test_redis_faults import own_redis as own_redis  # the fixture
from tests.support.clients import S2S, Rtt, open_socket
from tests.support.raw_ws import TEXT
from tests.support.redis_server import RedisServer
from tests.support.server import running
from tests.support.server import test_settings as settings_for
from tests.support.stalled import held_bytes, session_of, stalled_replay
from tests.support.waits import eventually

BACKLOG = 60  # 60 x 100 KB: more than the kernel buffers (up to 4 MB) of a stalled client
OLD_HELD = 3  # live frames held by the stalled session when the data is lost


async def test_frames_held_from_before_an_epoch_change_are_never_delivered(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """Pins: after Redis came back empty (a new epoch), `_resync` kept the frames held from the
    old stream (seqs 61-63 here), so once the new stream reached those seqs the client got the
    old messages in place of the new ones (and a healing in progress ignored the epoch
    change). After RESYNC every frame is the new stream's, in order, once."""
    async with running(_settings(tmp_path, own_redis.url)) as server:
        s2s = S2S(server)
        try:
            for _ in range(BACKLOG):
                await s2s.send(["p"], {"pad": "b" * 100_000})
            raw = await stalled_replay(server, "p", since=0)
            session = session_of(server, "p")
            for i in range(OLD_HELD):
                await s2s.send(["p"], {"old": i})
            await eventually(
                lambda: _held(server), lambda n: n > 0, what="live frames held by the replay"
            )
            assert not session._live
            old_epoch = await _epoch(server)

            await asyncio.to_thread(own_redis.restart, wipe=True)
            await eventually(
                lambda: _epoch(server), lambda e: e != old_epoch, what="node saw the new epoch"
            )
            resync = None
            while resync is None:  # the rest of the old replay, then RESYNC
                frame = await _next_frame(raw)
                if frame.get("operation") == "RESYNC":
                    resync = frame
            start = int(resync["data"]["seq"])
            count = BACKLOG + OLD_HELD + 2  # the new stream passes the held frames' seqs
            new = [
                await _send_retrying(s2s, _send_body(["p"], f"new {i}"), uuid.uuid4().hex)
                for i in range(count)
            ]
            got: list[tuple[int, str]] = []
            while len(got) < count:
                frame = await _next_frame(raw)
                assert "seq" in frame, frame
                got.append((frame["seq"], frame["data"]["msgId"]))
            raw.close()
        finally:
            await s2s.close()
    assert start == 0
    assert got == list(enumerate(new, start=1))


async def _held(server: Any) -> int:
    return held_bytes(session_of(server, "p"))


async def _next_frame(raw: Any) -> dict[str, Any]:
    opcode, payload = await raw.recv(10.0)
    assert opcode == TEXT, (opcode, payload[:200])
    return dict(orjson.loads(payload))


SOCKETS = 400


async def test_a_pubsub_blip_with_hundreds_of_sockets_heals_every_one_without_1013(
    tmp_path: Path, clean_redis: str
) -> None:
    """Pins: after a pub/sub reconnect `heal_all` started one store read per session at once,
    so with hundreds of sockets they queued past the pool's timeout and each failed read
    closed its socket 1013 at once. Now the node runs RTT_HEALS_IN_FLIGHT reads at a time and
    a failed one is retried after a jittered wait: every socket stays open and gets every seq
    once, in order."""
    settings = settings_for(
        tmp_path,
        engine="redis",
        redis_url=clean_redis,
        probe_interval_seconds=0.3,
        redis_timeout_seconds=0.25,
        redis_pool_size=2,
        heals_in_flight=2,
    )
    profiles = [f"crowd-{i}" for i in range(SOCKETS)]
    admin = redis.asyncio.Redis.from_url(clean_redis)
    async with running(settings) as server:
        s2s = S2S(server)
        sockets: list[Rtt] = []
        try:
            for start in range(0, SOCKETS, 50):
                sockets += await asyncio.gather(
                    *(open_socket(server, p) for p in profiles[start : start + 50])
                )
            sent = [await s2s.send(profiles, {"n": 0})]
            # a loaded machine may have the node resubscribing already: kill a live subscription
            await eventually(
                lambda: admin.client_kill_filter(_type="pubsub"),
                lambda killed: killed >= 1,
                what="a pub/sub connection to kill",
            )
            sent += [await s2s.send(profiles, {"n": n}) for n in (1, 2)]
            await eventually(
                lambda: admin.client_list(_type="pubsub"),
                lambda clients: len(clients) == 1,
                what="node resubscribed",
            )
            await asyncio.sleep(0.5)  # the heals run
            sent.append(await s2s.send(profiles, {"n": 3}))
            got = await asyncio.gather(*(ws.pushed(len(sent), timeout=15) for ws in sockets))
        finally:
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            await s2s.close()
            await admin.aclose()
    expected = list(enumerate(sent, start=1))
    for frames in got:
        assert [(f["seq"], f["data"]["msgId"]) for f in frames] == expected
