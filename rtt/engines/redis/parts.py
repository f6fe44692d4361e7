"""Every store write as parts of one Redis Cluster slot each (lua/parts.lua), run where they fit.

On one Redis a write is all its parts in one script call, atomic as before. On a cluster a
script may only touch keys of one slot, so the parts are grouped by slot and each group is one
call: a send to 500 recipients becomes a call per distinct slot of its recipients' hash tags
(Redis refuses a script's keys of two slots, even on one master: CROSSSLOT), each master's calls
packed by hiredis and written at once on one of its connections (bulk.node_pipeline). Redirects
are handled here, not by redis-py, so a call and its WAIT share a connection. Across slots a
write is no longer atomic: the group of the first part (the message's, whose checks refuse a
conflicting change) can run alone first; if a later group fails the caller gets the error (503
upstream) and the groups already written stay. With `replicas` > 0 a cluster write also waits
(WAIT, on the connection that wrote) until that many replicas of every master it wrote to hold
it, so a write acknowledged to the caller survives the failover of any one of those masters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from rtt.engines.base import EngineUnavailable
from rtt.engines.redis.bulk import node_pipeline, run_script
from rtt.engines.redis.cluster import Cluster
from rtt.engines.redis.scripts import script
from rtt.protocol import dumps


class Part(NamedTuple):
    """One part of lua/parts.lua: its name, its keys (all of one slot), its args."""

    name: str
    keys: list[str]
    args: list[Any]


def slot(key: str) -> int:
    """The cluster slot of `key` (by its hash tag, if it has one)."""
    return key_slot(key.encode())


class Writer:
    """Runs parts on a Redis or a Redis Cluster (see the module's docstring)."""

    def __init__(
        self, client: Redis | RedisCluster, *, replicas: int = 0, replica_timeout: float = 1.0
    ) -> None:
        self._r = client
        self._script = script(client, "parts")
        self._replicas = replicas
        self._replica_timeout_ms = max(1, int(replica_timeout * 1000))

    async def run(self, parts: Sequence[Part], *, first_alone: bool = False) -> list[list[Any]]:
        """Each part's answer, in order; a ResponseError (nothing of that group written) or a
        connection error as redis-py raises them."""
        if not isinstance(self._r, Cluster):
            keys, args = _flat(parts)
            return cast(list[list[Any]], await run_script(self._r, self._script, keys, args))
        groups: dict[int, list[int]] = {}
        for i, part in enumerate(parts):
            groups.setdefault(slot(part.keys[0]), []).append(i)
        answers: list[list[Any]] = [[] for _ in parts]
        if first_alone:
            await self._groups(self._r, parts, [groups.pop(slot(parts[0].keys[0]))], answers)
        if groups:
            await self._groups(self._r, parts, list(groups.values()), answers)
        return answers

    async def _groups(
        self,
        cluster: Cluster,
        parts: Sequence[Part],
        groups: list[list[int]],
        answers: list[list[Any]],
    ) -> None:
        """Run each group as one call, fill `answers`. A call that did not run (its master does
        not know the script, or no longer owns the slot: MOVED) is run again, after the script
        is loaded or the layout learnt again, at most REDO_ROUNDS times: redirections are not
        left to redis-py, which would send the call on another connection than its WAIT."""
        for _ in range(REDO_ROUNDS):
            ran, redo, acks = await self._round(cluster, parts, groups)
            for group, result in ran:
                for i, answer in zip(group, result, strict=True):
                    answers[i] = answer
            if any(isinstance(ack, Exception) or int(ack) < self._replicas for ack in acks):
                await cluster.aclose()  # e.g. WAIT sent to a replica: the layout changed
                raise EngineUnavailable("a write was not copied to its replicas in time")
            if not redo:
                return
            if any(isinstance(error, redis.exceptions.NoScriptError) for _, error in redo):
                await cluster.script_load(self._script.script)  # a promoted replica, say
            else:
                await cluster.aclose()  # moved: learn the cluster's layout again
            groups = [group for group, _ in redo]
        raise EngineUnavailable("the cluster kept moving the slots of a write")

    async def _round(
        self, cluster: Cluster, parts: Sequence[Part], groups: list[list[int]]
    ) -> tuple[list[tuple[list[int], Any]], list[tuple[list[int], Exception]], list[Any]]:
        """One round trip per master: its groups, each one call, then WAIT on that connection.
        (group, answer) of the calls that ran, (group, error) of those that did not, and the
        WAIT answers of the masters written to."""
        await cluster.initialize()  # nothing to do unless the layout is to be learnt again
        commands: list[list[Any]] = []
        by_node: dict[str, tuple[ClusterNode, list[int]]] = {}
        for g, group in enumerate(groups):
            keys, args = _flat([parts[i] for i in group])
            commands.append(["EVALSHA", self._script.sha, len(keys), *keys, *args])
            node = cluster.get_node_from_key(keys[0])
            if node is None:
                raise redis.exceptions.ConnectionError(f"no master serves {keys[0]}")
            by_node.setdefault(node.name, (node, []))[1].append(g)
        wait = [["WAIT", self._replicas, self._replica_timeout_ms]] if self._replicas else []
        async with cluster.turn():
            replies = await asyncio.gather(*(
                node_pipeline(cluster, node, [*(commands[g] for g in mine), *wait])
                for node, mine in by_node.values()
            ))  # fmt: skip
        ran: list[tuple[list[int], Any]] = []
        redo: list[tuple[list[int], Exception]] = []
        acks: list[Any] = []
        for (_, mine), reply in zip(by_node.values(), replies, strict=True):
            for g, result in zip(mine, reply, strict=False):
                if isinstance(result, _NOT_RUN):
                    redo.append((groups[g], result))
                elif isinstance(result, Exception):
                    raise result
                else:
                    ran.append((groups[g], result))
            if wait and not all(isinstance(r, Exception) for r in reply[: len(mine)]):
                acks.append(reply[-1])
        return ran, redo, acks


REDO_ROUNDS = 3
# the errors of a call that Redis refused before running it: safe to send again
_NOT_RUN = (
    redis.exceptions.NoScriptError,
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
)


def _flat(parts: Sequence[Part]) -> tuple[list[str], list[Any]]:
    """The keys and args of one call of lua/parts.lua running `parts`."""
    keys: list[str] = []
    args: list[Any] = [dumps([[p.name, len(p.keys), len(p.args)] for p in parts])]
    for part in parts:
        keys += part.keys
        args += part.args
    return keys, args
