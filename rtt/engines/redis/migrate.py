"""Moving a Redis written by an older rtt to today's key layout (keys.LAYOUT_VERSION).

Layout 0 (before Redis Cluster support): an app's shared keys were `rtt:<len>:<app>:<suffix>`
and the keys every send touches `rtt:epoch`, `rtt:writes`, `rtt:outboxes`, `rtt:event_apps`;
today they carry hash tags (`rtt:{<len>:<app>}:<suffix>`, `{rtt}:…`, keys.py) so that each
group is one Cluster slot. Layout 1 (those names, unreleased): a profile's seq was a key of its
own, `{p:…}:seq`; today it is the `#seq` field of the profile's box hash, so a send writes one
key fewer per recipient. Profile, message and frame keys kept their names.

Without the move a node would see an empty store and every client would RESYNC, so a node
refuses to start on an older layout (layout.py) and `rtt migrate-redis` moves the
data in place: RENAME keeps each value, its TTL and a stream's consumer groups; a seq becomes a
field of its box. Run it with every node stopped, on a single Redis (a Redis Cluster was never
written in an older layout). It can be run again after an interruption: the epoch and the
layout mark move last, so until then nodes still refuse to start, and what moved is skipped.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.asyncio import Redis

from rtt.engines.redis import keys
from rtt.engines.redis.layout import LEGACY_EPOCH
from rtt.engines.redis.presence import live_nodes

LEGACY_WRITES = "rtt:writes"
LEGACY_OUTBOXES = "rtt:outboxes"
LEGACY_EVENT_APPS = "rtt:event_apps"
LEGACY_SEQ = ":seq"  # a profile's seq key: `{p:<len>:<app>:<profile>}:seq`

BATCH = 500  # keys moved per round trip
_APP_KEY = re.compile(r"rtt:(\d+):")


class NodesRunning(RuntimeError):
    """A node is alive on this Redis: it would go on writing under the names being moved."""


def current_name(legacy: str) -> str | None:
    """Today's name of an app key of layout 0; None for a name that did not change (a
    frame, a profile's or message's key, a node's) or that is not an app key at all."""
    match = _APP_KEY.match(legacy)
    if match is None:
        return None
    size, head = int(match[1]), match.end()
    app, rest = legacy[head : head + size], legacy[head + size :]
    if len(app) != size or not rest.startswith(":") or rest.startswith(":frame:"):
        return None
    return f"rtt:{{{size}:{app}}}{rest}"


@dataclass
class Moved:
    """What `migrate` did: keys renamed, seqs folded into their boxes, and old keys left
    because their new name was taken."""

    renamed: int = 0
    folded: int = 0
    conflicts: list[str] = field(default_factory=list)


async def migrate(client: Redis) -> Moved:
    """Rename every key of layout 0 to its current name, rewrite the key names held in the
    outbox set and the dropped-entries hash, fold every seq key of layouts 0 and 1 into its box,
    then move the epoch and mark the layout (last, see the module; not at all if a key could not
    be renamed)."""
    alive, _ = await live_nodes(client)
    if alive:
        raise NodesRunning(
            f"{len(alive)} node(s) still running on this Redis ({alive[0]}…): stop them first"
        )
    moved = Moved()
    async for names in _batches(client, "rtt:[0-9]*"):
        pairs = [(name, current_name(name)) for name in names]
        await _rename(client, [(old, new) for old, new in pairs if new is not None], moved)
    await _rewrite_names(client)
    async for names in _batches(client, "{p:*}" + LEGACY_SEQ):
        moved.folded += await _fold_seqs(client, names)
    if moved.conflicts:  # the epoch stays: nodes refuse to start until they are resolved
        return moved
    async with client.pipeline(transaction=True) as pipe:
        for old, new in ((LEGACY_WRITES, keys.WRITES), (LEGACY_EPOCH, keys.EPOCH)):
            pipe.copy(old, new, replace=True)
            pipe.delete(old)
        pipe.set(keys.LAYOUT, keys.LAYOUT_VERSION)
        await pipe.execute()
    return moved


async def _batches(client: Redis, match: str) -> AsyncIterator[list[str]]:
    """The names of the keys matching `match`, BATCH at a time (SCAN: one may come twice)."""
    batch: list[str] = []
    async for raw in client.scan_iter(match=match, count=1000):
        batch.append(raw.decode("utf-8", "surrogateescape"))
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _fold_seqs(client: Redis, names: list[str]) -> int:
    """Each `{p:…}:seq` becomes the SEQ_FIELD of the profile's box, in one transaction per
    batch (a seq key that vanished since SCAN is skipped); how many were folded."""
    if not names:
        return 0
    values = await client.mget(names)
    async with client.pipeline(transaction=True) as pipe:
        for name, value in zip(names, values, strict=True):
            if value is not None:
                box = name[: -len(LEGACY_SEQ)] + keys.BOX
                pipe.hset(box, keys.SEQ_FIELD, value)
                pipe.delete(name)
        await pipe.execute()
    return sum(value is not None for value in values)


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
