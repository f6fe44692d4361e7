"""`rtt migrate-redis`: a Redis written in an older key layout (before Redis Cluster support;
then with a seq key per profile) is moved in place, a node refuses to start on it until then,
and nothing stored changes: the same values and TTLs, the outbox's consumer group, every seq,
the same epoch (clients resume without RESYNC).

The oldest layout is made by moving what today's node wrote back (the inverse of
`current_name`, and each box's seq field back into a key of its own): the values an older rtt
wrote are the same, only where they live moved."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from rtt.engines.redis import keys, redis_engine
from rtt.engines.redis.layout import LegacyLayout
from rtt.engines.redis.migrate import current_name
from tests.support.clients import S2S, socket
from tests.support.server import free_port, running
from tests.support.server import test_settings as settings_for

pytestmark = pytest.mark.timeout(120)

OLD_CROSS_APP = {
    keys.EPOCH: "rtt:epoch",
    keys.WRITES: "rtt:writes",
    keys.OUTBOXES: "rtt:outboxes",
    keys.EVENT_APPS: "rtt:event_apps",
}
REWRITTEN = {keys.OUTBOXES, keys.EVENT_APPS, keys.PUSH_DROPPED}  # compared by content
LEGACY_SEQ = ":seq"


def legacy_name(name: str) -> str:
    """The name an rtt of before Redis Cluster support gave the key now called `name`."""
    if name in OLD_CROSS_APP:
        return OLD_CROSS_APP[name]
    match = re.match(r"rtt:\{(\d+):", name)
    if match is None:
        return name
    end = match.end() + int(match[1])
    assert name[end] == "}", name
    return f"rtt:{match[1]}:{name[match.end() : end]}{name[end + 1 :]}"


def to_legacy_layout(client: redis.Redis) -> tuple[int, int]:
    """Move every seq out of its box into a key of its own, rename every key to its old name
    and rewrite the names held in values; (app keys whose name changed, seqs moved out): what
    the migration has to move back."""
    seqs = 0
    for raw in list(client.scan_iter(match="{p:*}" + keys.BOX, count=1000)):
        box = raw.decode()
        seq = client.hget(box, keys.SEQ_FIELD)
        if seq is not None:
            client.hdel(box, keys.SEQ_FIELD)
            client.set(box[: -len(keys.BOX)] + LEGACY_SEQ, seq)
            seqs += 1
    client.delete(keys.LAYOUT)
    renamed = 0
    for raw in list(client.scan_iter(count=1000)):
        name = raw.decode()
        old = legacy_name(name)
        if old != name:
            client.rename(name, old)
            renamed += name not in OLD_CROSS_APP
    outboxes = client.smembers("rtt:outboxes")
    client.delete("rtt:outboxes")
    client.sadd("rtt:outboxes", *(legacy_name(m.decode()) for m in outboxes))
    for field, value in client.hgetall(keys.PUSH_DROPPED).items():
        client.hdel(keys.PUSH_DROPPED, field)
        client.hset(keys.PUSH_DROPPED, legacy_name(field.decode()), value)
    return renamed, seqs


def snapshot(client: redis.Redis) -> dict[str, object]:
    """Every key's serialized value and whether it expires; sets and hashes rebuilt by the
    migration by their content; streams' consumer groups by name and position."""
    seen: dict[str, object] = {}
    for raw in client.scan_iter(count=1000):
        name = raw.decode()
        kind = client.type(name).decode()
        if name in REWRITTEN or name.endswith(keys.BOX):  # a box gets its seq field back
            value: object = client.smembers(name) if kind == "set" else client.hgetall(name)
        elif kind == "stream":
            groups = client.xinfo_groups(name)
            value = (client.dump(name), [(g["name"], g["last-delivered-id"]) for g in groups])
        else:
            value = client.dump(name)
        seen[name] = (value, client.pttl(name) > 0)
    return seen


async def idempotent_send(s2s: S2S) -> tuple[int, Any]:
    return await s2s.call(
        "messaging",
        "SYS_SEND_MESSAGE",
        {"toProfileIds": ["p1"], "contentJson": {"once": True}, "fromJson": {"name": "Ops"}},
        {"Idempotency-Key": "order-1"},
    )


def migrate_cli(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtt", "migrate-redis", "--redis-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("rtt:4:demo:messages", "rtt:{4:demo}:messages"),
        ("rtt:3:a:b:push:tries", "rtt:{3:a:b}:push:tries"),  # an app id holding ':'
        ("rtt:4:demo:idem:k:1", "rtt:{4:demo}:idem:k:1"),
        ("rtt:4:demo:frame:abc", None),  # frames kept their names
        ("rtt:s2s:abc", None),
        ("rtt:node:1:profiles", None),
        ("{p:4:demo:p1}:seq", None),
        ("rtt:9:demo:messages", None),  # a length that does not fit is no app key
    ],
)
def test_current_name(old: str, new: str | None):
    """Fails if an old app key is not given its tagged name, or another key is renamed."""
    assert current_name(old) == new
    if new is not None:
        assert legacy_name(new) == old


async def seed(tmp_path: Path, url: str) -> tuple[str, int, str]:
    """A node's data: messages and events for offline profiles (push entries, one dropped by
    retention), an idempotent send, a connected profile's stream. (epoch, seq, idempotent id)"""
    settings = settings_for(tmp_path, engine="redis", redis_url=url, outbox_max_entries=3)
    async with running(settings) as server:
        s2s = S2S(server)
        try:
            for n in range(2):
                await s2s.send(["p1", "p2"], {"n": n})
            await s2s.ok(
                "event",
                "SYS_SEND_EVENT_TO_PROFILES",
                {"toIds": ["p1"], "eventType": "tick", "eventData": {"n": 1}},
            )
            status, body = await idempotent_send(s2s)
            assert status == 200, body
            async with socket(server, "p3") as client:
                epoch = client.connect["epoch"]
                await s2s.send(["p3"], {"n": 1})
                [frame] = await client.pushed(1)
            await server.node.engine.store.sweep()  # push entries past 3 are counted dropped
        finally:
            await s2s.close()
    return epoch, frame["seq"], body["data"]["msgId"]


async def test_migrate_moves_an_old_layout_in_place(tmp_path: Path, clean_redis: str):
    """Fails if a node starts on the old names, if the migration runs while a node is alive,
    or if after it any key, value, TTL, consumer group, dropped count or the epoch changed,
    or a client cannot resume and retry where it left off."""
    epoch, seq, msg_id = await seed(tmp_path, clean_redis)
    client = redis.Redis.from_url(clean_redis)
    assert int(client.hget(keys.PUSH_DROPPED, keys.outbox("demo")) or 0) > 0
    before = snapshot(client)
    app_keys, seqs = to_legacy_layout(client)
    assert app_keys >= 5 and seqs >= 3
    assert client.exists("rtt:epoch") and not client.exists(keys.EPOCH)
    legacy = snapshot(client)

    port = free_port()
    refused = subprocess.run(
        [sys.executable, "-m", "rtt", "serve", "--engine", "redis", "--redis-url", clean_redis,
         "--port", str(port), "--database", str(tmp_path / "x.db")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode != 0 and "rtt migrate-redis" in refused.stderr, refused.stderr

    client.sadd(keys.NODES, "old-node")  # an old node still running: its presence is live
    client.set(keys.node_alive("old-node"), 1, px=60_000)
    running_node = migrate_cli(clean_redis)
    assert running_node.returncode != 0 and "still running" in running_node.stderr
    client.delete(keys.node_alive("old-node"))
    client.srem(keys.NODES, "old-node")
    assert snapshot(client) == legacy  # refused: nothing moved

    done = migrate_cli(clean_redis)
    assert done.returncode == 0, done.stderr
    assert f"{app_keys} keys renamed, {seqs} seqs moved" in done.stdout
    assert snapshot(client) == before
    again = migrate_cli(clean_redis)
    assert again.returncode == 0 and "0 keys renamed, 0 seqs moved" in again.stdout
    assert snapshot(client) == before

    settings = settings_for(tmp_path, engine="redis", redis_url=clean_redis)
    async with running(settings) as server:
        s2s = S2S(server)
        try:
            async with socket(server, "p3", since=seq - 1, epoch=epoch) as resumed:
                assert resumed.connect["epoch"] == epoch
                [frame] = await resumed.pushed(1)
                assert frame["seq"] == seq  # replayed, no RESYNC
            status, body = await idempotent_send(s2s)
            assert status == 200 and body["data"]["msgId"] == msg_id  # the key was kept
        finally:
            await s2s.close()
    client.close()


def test_a_taken_new_name_is_reported_and_keeps_nodes_out(clean_redis: str):
    """Fails if a key whose new name is taken is overwritten, or if the epoch moves anyway
    (nodes would then start on a store missing that key); once resolved, a rerun finishes."""
    client = redis.Redis.from_url(clean_redis)
    client.set("rtt:epoch", "e1")
    client.zadd("rtt:4:demo:messages", {"old": 1})
    client.zadd("rtt:{4:demo}:messages", {"new": 1})  # written by a node of the new version
    client.sadd("rtt:4:demo:rc:senders", "ops")
    first = migrate_cli(clean_redis)
    assert first.returncode != 0 and "left under their old names" in first.stderr
    assert "rtt:4:demo:messages" in first.stderr and "epoch was not moved" in first.stderr
    assert client.exists("rtt:epoch") and not client.exists(keys.EPOCH)
    assert client.zrange("rtt:4:demo:messages", 0, -1) == [b"old"]
    assert client.zrange("rtt:{4:demo}:messages", 0, -1) == [b"new"]
    assert client.smembers("rtt:{4:demo}:rc:senders") == {b"ops"}  # the others moved
    client.delete("rtt:{4:demo}:messages")
    second = migrate_cli(clean_redis)
    assert second.returncode == 0 and "1 keys renamed" in second.stdout, second.stderr
    assert client.get(keys.EPOCH) == b"e1" and not client.exists("rtt:epoch")
    assert client.get(keys.LAYOUT) == keys.LAYOUT_VERSION
    assert client.zrange("rtt:{4:demo}:messages", 0, -1) == [b"old"]
    client.close()


async def test_a_store_with_a_seq_key_per_profile_is_refused_then_folded(clean_redis: str):
    """Fails if a node starts on layout 1 (hash-tagged names, a seq key per profile: it would
    number every profile's frames from 1 again), or the migration loses a seq or an entry."""
    client = redis.Redis.from_url(clean_redis)
    client.set(keys.EPOCH, "e1")
    client.set(keys.box("demo", "p1")[: -len(keys.BOX)] + LEGACY_SEQ, 41)
    client.hset(keys.box("demo", "p1"), "inbox:m1", "[0,1,1,1]")
    engine = redis_engine(
        clean_redis, timeout=2.0, probe_interval=0.2, presence_ttl=1.0,
        stream_max_items=10, stream_max_seconds=3600,
    )  # fmt: skip
    try:
        with pytest.raises(LegacyLayout):
            await engine.store.start()
        done = migrate_cli(clean_redis)
        assert done.returncode == 0 and "1 seqs moved" in done.stdout, done.stderr
        assert client.hgetall(keys.box("demo", "p1")) == {b"#seq": b"41", b"inbox:m1": b"[0,1,1,1]"}
        await engine.store.start()
        assert engine.store.epoch == "e1"
        assert await engine.store.latest_seq("demo", "p1") == 41
    finally:
        await engine.close()
        client.close()
