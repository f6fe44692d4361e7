"""The local engine's sweep works a slice of profiles per database job, so a send waits behind
one slice, never behind the whole sweep. A real SQLite file on its own database thread."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson

from rtt.domain.messages import new_message
from rtt.engines.local import local_engine
from rtt.protocol import whole_frame

APP = "app"
SYSTEM = {"id": None, "name": "Admin"}
FRAME = whole_frame("messaging", "INCOMING", {})
PROFILES = 40_000


async def test_a_send_does_not_wait_behind_a_whole_sweep(tmp_path: Path) -> None:
    """Pins: the sweep trimmed every profile's stream in one database job (with 40 000 profiles
    a send queued behind it waited for all of it); now a send started while a sweep runs
    finishes long before the sweep does, and the sweep's result is the same: each stream
    keeps only its newest item, and the trim survives a restart."""
    engine = local_engine(tmp_path / "s.db", stream_max_items=1, stream_max_seconds=3600)
    await engine.start(lambda fanout: None, lambda: None)
    store = engine.store
    everyone = [f"p{n}" for n in range(PROFILES)]
    try:
        for _ in range(2):  # two items per profile: the sweep trims every one of them
            m = new_message(SYSTEM, ["x"], orjson.dumps({}), int(time.time() * 1000))
            await store.append_message(APP, m, everyone, None, FRAME, [b""] * PROFILES, [])
        started = time.perf_counter()
        sweep = asyncio.create_task(store.sweep())
        await asyncio.sleep(0.002)  # the sweep is under way on the database thread
        sent_at = time.perf_counter()
        m = new_message(SYSTEM, ["q"], orjson.dumps({}), int(time.time() * 1000))
        await store.append_message(APP, m, ["q"], None, FRAME, [b""], [])
        send = time.perf_counter() - sent_at
        await sweep
        whole = time.perf_counter() - started
        print(f"send {send * 1000:.1f} ms, whole sweep {whole * 1000:.1f} ms")
        assert send < max(0.05, whole / 4), (send, whole)
        for p in ("p0", everyone[-1]):
            assert await store.latest_seq(APP, p) == 2
            assert await store.stream_since(APP, p, 0, 10) is None  # seq 1 was trimmed
            assert [s for s, _ in await store.stream_since(APP, p, 1, 10) or []] == [2]
    finally:
        await engine.close()
    again = local_engine(tmp_path / "s.db", stream_max_items=1, stream_max_seconds=3600)
    await again.start(lambda fanout: None, lambda: None)
    try:
        assert await again.store.stream_since(APP, "p7", 0, 10) is None
        assert await again.store.latest_seq(APP, "p7") == 2
    finally:
        await again.close()
