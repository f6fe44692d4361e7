"""Push dispatch state on Redis (PushState), shared by the dispatchers of every node.

Each app's outbox is a Stream the send scripts write with its consumer group (`rtt-push`).
A dispatcher reads new entries with XREADGROUP, which makes it their holder in the group's
pending list; the idle time there is the lease: the holder renews it (XCLAIM … JUSTID) while it
works, and entries idle past the lease (their holder died) are taken over with XAUTOCLAIM. A
settled entry is XACKed and XDELed in one MULTI, so the stream holds exactly what is not yet
settled: `push/SYS_GET_PENDING`, the depth and retention (the sweep's XTRIM, counted in
`dropped`) see the same entries as on the local engine. An entry waiting for a retry is parked
with the `rtt-parked` consumer at the idle time that makes XAUTOCLAIM return it when due; its
attempt count and due time are in a hash beside the stream.
"""

from __future__ import annotations

import time
from typing import Any, cast

import orjson
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.domain.notification import dead_item
from rtt.domain.push import PushEntry
from rtt.engines.base import Claimed, Device
from rtt.engines.redis import keys
from rtt.engines.redis.scripts import script
from rtt.engines.redis.store import guarded

CHUNK = 512  # commands per pipeline round trip


def _ms(seconds: float) -> int:
    return max(0, int(seconds * 1000))


def _entry(entry_id: bytes, f: dict[bytes, Any], attempts: int) -> PushEntry:
    return PushEntry(
        f[b"profile"].decode(), f[b"kind"].decode(), f[b"ref"].decode(), f[b"title"].decode(),
        f[b"body"].decode(), bytes(f[b"data"]), int(f[b"created_at"]), entry_id.decode(),
        attempts,
    )  # fmt: skip


def _tries(raw: bytes | None) -> tuple[int, int]:
    """(attempts, due ms) from the tries hash; an entry never tried is (0, 0)."""
    if raw is None:
        return 0, 0
    attempts, _, due = raw.decode().partition(":")
    return int(attempts), int(due)


class RedisPush:
    """PushState on one Redis; see engines/base.py and this module's docstring."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._r = client
        self._add_device = script(client, "add_device")
        self._cursors: dict[str, str] = {}  # app → where the next XAUTOCLAIM scan starts

    async def _create_group(self, app: str) -> None:
        """The group the send scripts create with the stream, made here for an app that has
        had no entry yet (XREADGROUP on a missing group fails)."""
        try:
            await self._r.xgroup_create(keys.outbox(app), keys.PUSH_GROUP, "0", mkstream=True)
        except redis.exceptions.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        await self._r.sadd(keys.OUTBOXES, keys.outbox(app))

    @guarded
    async def claim(self, apps: list[str], worker: str, limit: int, lease: float) -> list[Claimed]:
        out: list[Claimed] = []
        for app in apps:
            room = limit - len(out)
            if room <= 0:
                break
            try:
                out += await self._claim_app(app, worker, room, lease)
            except redis.exceptions.ResponseError as e:
                if "NOGROUP" not in str(e):
                    raise
                await self._create_group(app)
        return out

    async def _claim_app(self, app: str, worker: str, room: int, lease: float) -> list[Claimed]:
        key, lease_ms = keys.outbox(app), _ms(lease)
        cursor, taken, *_ = await self._r.xautoclaim(
            key, keys.PUSH_GROUP, worker, lease_ms, self._cursors.get(app, "0-0"), count=room
        )
        self._cursors[app] = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        out: list[Claimed] = []
        if taken:
            tries = await self._r.hmget(keys.push_tries(app), [i for i, _ in taken])
            now = time.time_ns() // 1_000_000
            early: list[tuple[bytes, int]] = []
            for (entry_id, fields), raw in zip(taken, tries, strict=True):
                attempts, due = _tries(raw)
                if due > now:  # parked longer than one lease: park it again
                    early.append((entry_id, due - now))
                elif fields:
                    out.append(Claimed(app, _entry(entry_id, fields, attempts)))
            for entry_id, wait in early:
                await self._park(key, [entry_id], wait, lease_ms)
        room -= len(out)
        if room > 0:
            reply = await self._r.xreadgroup(keys.PUSH_GROUP, worker, {key: ">"}, count=room)
            for _, entries in cast(list[Any], reply or []):
                out += [Claimed(app, _entry(i, f, 0)) for i, f in entries if f]
        return out

    async def _park(self, key: str, ids: list[Any], wait_ms: int, lease_ms: int) -> None:
        """Hand entries to the parked consumer at the idle time that has XAUTOCLAIM (min idle
        = the lease) return them `wait_ms` from now (after at most a lease, if longer)."""
        await self._r.xclaim(
            key, keys.PUSH_GROUP, keys.PUSH_PARKED, 0, ids,
            idle=max(0, lease_ms - wait_ms), justid=True,
        )  # fmt: skip

    @guarded
    async def renew(self, held: list[Claimed], worker: str, lease: float) -> None:
        by_app: dict[str, list[str]] = {}
        for c in held:
            by_app.setdefault(c.app, []).append(c.entry.push_id)
        for app, ids in by_app.items():
            for i in range(0, len(ids), CHUNK):
                await self._r.xclaim(
                    keys.outbox(app), keys.PUSH_GROUP, worker, 0, ids[i : i + CHUNK],
                    idle=0, justid=True,
                )  # fmt: skip

    @guarded
    async def done(self, app: str, push_ids: list[str]) -> None:
        key = keys.outbox(app)
        for i in range(0, len(push_ids), CHUNK):
            ids = push_ids[i : i + CHUNK]
            async with self._r.pipeline(transaction=True) as pipe:
                pipe.xack(key, keys.PUSH_GROUP, *ids)
                pipe.xdel(key, *ids)
                pipe.hdel(keys.push_tries(app), *ids)
                await pipe.execute()

    @guarded
    async def retry(
        self, app: str, entries: list[PushEntry], delay: float, attempt: bool, lease: float
    ) -> None:
        if not entries:
            return
        key, due = keys.outbox(app), time.time_ns() // 1_000_000 + _ms(delay)
        tries = {e.push_id: f"{e.attempts + int(attempt)}:{due}" for e in entries}
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hset(keys.push_tries(app), mapping=tries)
            pipe.xclaim(
                key, keys.PUSH_GROUP, keys.PUSH_PARKED, 0, list(tries),
                idle=max(0, _ms(lease) - _ms(delay)), justid=True,
            )  # fmt: skip
            await pipe.execute()

    @guarded
    async def dead(self, app: str, entries: list[PushEntry], error: str, keep: int) -> None:
        if not entries:
            return
        key, now_ms = keys.outbox(app), time.time_ns() // 1_000_000
        ids = [e.push_id for e in entries]
        async with self._r.pipeline(transaction=True) as pipe:
            for e in entries:
                item = dead_item(e, error, e.attempts + 1, now_ms)
                pipe.xadd(keys.push_dead(app), {"item": item}, maxlen=keep, approximate=False)
            pipe.xack(key, keys.PUSH_GROUP, *ids)
            pipe.xdel(key, *ids)
            pipe.hdel(keys.push_tries(app), *ids)
            await pipe.execute()

    @guarded
    async def dead_letters(self, app: str, limit: int) -> list[dict[str, object]]:
        rows = await self._r.xrange(keys.push_dead(app), count=limit)
        return [orjson.loads(f[b"item"]) for _, f in rows]

    @guarded
    async def depth(self, app: str) -> int:
        return int(await self._r.xlen(keys.outbox(app)))

    @guarded
    async def delivered(self, app: str, keys_: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(keys_), CHUNK):
            part = keys_[i : i + CHUNK]
            values = await self._r.mget([keys.push_delivered(app, k) for k in part])
            found.update(k for k, v in zip(part, values, strict=True) if v is not None)
        return found

    @guarded
    async def record_delivered(self, app: str, keys_: list[str], ttl: float) -> None:
        for i in range(0, len(keys_), CHUNK):
            async with self._r.pipeline(transaction=False) as pipe:
                for k in keys_[i : i + CHUNK]:
                    pipe.set(keys.push_delivered(app, k), b"1", px=max(1, _ms(ttl)))
                await pipe.execute()

    @guarded
    async def gate(self, app: str, profiles: list[str], interval: float) -> dict[str, float]:
        waits: dict[str, float] = {}
        if interval <= 0:
            return dict.fromkeys(profiles, 0.0)
        for i in range(0, len(profiles), CHUNK):
            part = profiles[i : i + CHUNK]
            async with self._r.pipeline(transaction=True) as pipe:
                for p in part:
                    pipe.set(keys.push_gate(app, p), b"1", px=max(1, _ms(interval)), nx=True)
                    pipe.pttl(keys.push_gate(app, p))
                replies = await pipe.execute()
            for p, taken, left in zip(part, replies[::2], replies[1::2], strict=True):
                waits[p] = 0.0 if taken else max(0, int(left)) / 1000
        return waits

    @guarded
    async def add_device(self, app: str, profile: str, device: Device, max_devices: int) -> None:
        await self._add_device(
            keys=[keys.push_devices(app, profile)],
            args=[f"{device.platform}:{device.token}", device.registered_at, max_devices],
        )

    @guarded
    async def remove_device(self, app: str, profile: str, platform: str, token: str) -> None:
        await self._r.hdel(keys.push_devices(app, profile), f"{platform}:{token}")

    @guarded
    async def remove_devices(self, app: str, profile: str) -> None:
        await self._r.delete(keys.push_devices(app, profile))

    @guarded
    async def devices(self, app: str, profiles: list[str]) -> dict[str, list[Device]]:
        found: dict[str, list[Device]] = {}
        for i in range(0, len(profiles), CHUNK):
            part = profiles[i : i + CHUNK]
            async with self._r.pipeline(transaction=False) as pipe:
                for p in part:
                    pipe.hgetall(keys.push_devices(app, p))
                replies = await pipe.execute()
            for p, fields in zip(part, replies, strict=True):
                if fields:
                    devices = []
                    for field, at in fields.items():
                        platform, _, token = field.decode().partition(":")
                        devices.append(Device(platform, token, int(at)))
                    devices.sort(key=lambda d: (d.registered_at, d.platform, d.token))
                    found[p] = devices
        return found

    async def sweep(self) -> None:
        """Dedupe keys and gates expire by themselves (TTL)."""

    async def close(self) -> None:
        await self._r.aclose()
