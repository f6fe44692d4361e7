"""Moving a Redis written by rtt before Redis Cluster support to today's key names.

Before, an app's shared keys were `rtt:<len>:<app>:<suffix>` and the keys every send touches
`rtt:epoch`, `rtt:writes`, `rtt:outboxes`, `rtt:event_apps`; today they carry hash tags
(`rtt:{<len>:<app>}:<suffix>`, `{rtt}:…`, keys.py) so that each group is one Cluster slot.
Profile, message and frame keys kept their names. Without this move a node would see an empty
store and every client would RESYNC, so a node refuses to start on the old layout
(`refuse_legacy_layout`) and `rtt migrate-redis` renames the keys in place: RENAME keeps each
value, its TTL and a stream's consumer groups, and no value is copied.

Run it with every node stopped. It can be run again after an interruption: the epoch moves
last, so until it has moved nodes still refuse to start, and keys already moved are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from redis.asyncio import Redis

from rtt.engines.redis import keys

LEGACY_EPOCH = "rtt:epoch"
LEGACY_WRITES = "rtt:writes"
LEGACY_OUTBOXES = "rtt:outboxes"
LEGACY_EVENT_APPS = "rtt:event_apps"

BATCH = 500  # renames per round trip
_APP_KEY = re.compile(r"rtt:(\d+):")


class LegacyLayout(RuntimeError):
    """The store still holds data under the key names of before Redis Cluster support."""


class NodesRunning(RuntimeError):
    """A node is alive on this Redis: it would go on writing under the names being moved."""


def current_name(legacy: str) -> str | None:
    """Today's name of an app key of the old layout; None for a name that did not change (a
    frame, a profile's or message's key, a node's) or that is not an app key at all."""
    match = _APP_KEY.match(legacy)
    if match is None:
        return None
    size, head = int(match[1]), match.end()
    app, rest = legacy[head : head + size], legacy[head + size :]
    if len(app) != size or not rest.startswith(":") or rest.startswith(":frame:"):
        return None
    return f"rtt:{{{size}:{app}}}{rest}"


async def refuse_legacy_layout(client: Redis) -> None:
    """Raise LegacyLayout when the store was written under the old names and not moved yet:
    starting on it would hide every stored message and make every client RESYNC."""
    if await client.exists(LEGACY_EPOCH):
        raise LegacyLayout(
            "this Redis holds rtt data under the key names of before Redis Cluster support;"
            " stop every node and run once: rtt migrate-redis --redis-url <this Redis>"
        )


@dataclass
class Moved:
    """What `migrate` did: keys renamed, and old keys left because their new name was taken."""

    renamed: int = 0
    conflicts: list[str] = field(default_factory=list)


async def migrate(client: Redis) -> Moved:
    """Rename every key of the old layout to its current name, rewrite the key names held in
    the outbox set and the dropped-entries hash, then move the epoch (last, see the module;
    not at all if a key could not be renamed)."""
    alive = await _live_nodes(client)
    if alive:
        raise NodesRunning(
            f"{len(alive)} node(s) still running on this Redis ({alive[0]}…): stop them first"
        )
    moved = Moved()
    batch: list[tuple[str, str]] = []
    async for raw in client.scan_iter(match="rtt:[0-9]*", count=1000):
        name = raw.decode("utf-8", "surrogateescape")
        new = current_name(name)
        if new is not None:
            batch.append((name, new))
        if len(batch) >= BATCH:
            await _rename(client, batch, moved)
            batch = []
    await _rename(client, batch, moved)
    await _rewrite_names(client)
    if moved.conflicts:  # the epoch stays: nodes refuse to start until they are resolved
        return moved
    async with client.pipeline(transaction=True) as pipe:
        for old, new in ((LEGACY_WRITES, keys.WRITES), (LEGACY_EPOCH, keys.EPOCH)):
            pipe.copy(old, new, replace=True)
            pipe.delete(old)
        await pipe.execute()
    return moved


async def _live_nodes(client: Redis) -> list[str]:
    """The nodes whose presence key has not expired: the ones still running."""
    nodes = [n.decode() for n in await client.smembers(keys.NODES)]
    if not nodes:
        return []
    alive = await client.mget([keys.node_alive(n) for n in nodes])
    return [n for n, up in zip(nodes, alive, strict=True) if up]


async def _rename(client: Redis, batch: list[tuple[str, str]], moved: Moved) -> None:
    """RENAMENX each pair in one round trip: a new name already taken (a node of the new
    version wrote it) is reported, never overwritten."""
    if not batch:
        return
    async with client.pipeline(transaction=False) as pipe:
        for old, new in batch:
            pipe.renamenx(old, new)
        done = await pipe.execute(raise_on_error=False)
    for (old, _), ok in zip(batch, done, strict=True):
        if isinstance(ok, Exception):  # the key vanished since SCAN (expired): nothing to move
            continue
        if ok:
            moved.renamed += 1
        else:
            moved.conflicts.append(old)


async def _rewrite_names(client: Redis) -> None:
    """The sets and the hash whose members are key names or app ids, merged into their new
    keys in one transaction."""
    outboxes = [m.decode() for m in await client.smembers(LEGACY_OUTBOXES)]
    dropped = {k.decode(): int(v) for k, v in (await client.hgetall(keys.PUSH_DROPPED)).items()}
    renamed_fields = {k: current_name(k) for k in dropped}
    async with client.pipeline(transaction=True) as pipe:
        if outboxes:
            pipe.sadd(keys.OUTBOXES, *(current_name(m) or m for m in outboxes))
        pipe.delete(LEGACY_OUTBOXES)
        pipe.sunionstore(keys.EVENT_APPS, [keys.EVENT_APPS, LEGACY_EVENT_APPS])
        pipe.delete(LEGACY_EVENT_APPS)
        for old, new in renamed_fields.items():
            if new is not None:
                pipe.hincrby(keys.PUSH_DROPPED, new, dropped[old])
                pipe.hdel(keys.PUSH_DROPPED, old)
        await pipe.execute()
