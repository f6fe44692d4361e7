"""The local engine's own file: what it refuses to open, and its age-based stream retention."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from rtt.domain.messages import new_message
from rtt.engines.local import local_engine
from rtt.protocol import whole_frame

APP = "app"


async def _send(store, to: list[str]) -> list[int]:
    message = new_message({"id": None, "name": "S"}, to, b"{}", int(time.time() * 1000))
    frame = whole_frame("messaging", "INCOMING", {"msgId": message.msg_id})
    mids = [orjson.dumps(p) for p in to]
    return await store.append_message(APP, message, to, None, frame, mids, [])


async def test_a_file_of_another_schema_is_refused_untouched(tmp_path: Path):
    """Fails if a database laid out by an earlier rtt is opened (and misread) or altered."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE boxes(app TEXT, profile TEXT)")
    conn.commit()
    conn.close()
    engine = local_engine(path, stream_max_items=10, stream_max_seconds=3600)
    with pytest.raises(RuntimeError, match="schema version 0"):
        await engine.start(lambda fanout: None, lambda: None)
    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()
    assert tables == {"boxes"} and journal == "delete"


async def test_stream_items_older_than_retention_are_dropped_but_the_newest(tmp_path: Path):
    """Fails if the sweep keeps items past stream_max_seconds, drops a profile's newest item
    (its latest seq), or frees a frame another profile still replays."""
    engine = local_engine(tmp_path / "r.db", stream_max_items=100, stream_max_seconds=0.3)
    await engine.start(lambda fanout: None, lambda: None)
    try:
        store = engine.store
        await _send(store, ["a", "b"])
        await _send(store, ["a"])
        await asyncio.sleep(0.4)
        await _send(store, ["a"])
        await store.sweep()
        assert [seq for seq, _ in await store.stream_since(APP, "a", 2, 10)] == [3]
        assert await store.stream_since(APP, "a", 0, 10) is None  # 1 and 2 were too old
        assert [seq for seq, _ in await store.stream_since(APP, "b", 0, 10)] == [1]  # newest
        assert await store.latest_seq(APP, "a") == 3
    finally:
        await engine.close()
