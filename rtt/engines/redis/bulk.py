"""Very long commands sent without holding the event loop.

redis-py packs a command's arguments in Python, in one piece: a send to 100 000 recipients is
one EVALSHA with 300 000 keys, and packing it held the loop for a third of a second. Such a
command is packed here by hiredis's C packer a slice of arguments at a time, the loop served in
between, then written and answered on a connection of the client's own pool. Even a common
send's script (3 000 keys for 1 000 recipients) is packed here: redis-py's packing and its
write of one buffer per argument were 16 % of the node's CPU on the redis engine's fan-out
benchmark. Short commands (every usual one) go through redis-py unchanged. On a Redis Cluster
such a command goes on a connection of the master that serves its keys' slot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import Connection
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ConnectionError,
    MovedError,
    NoScriptError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from rtt.engines.redis.cluster import Cluster
from rtt.slices import pieces

PACKED_FROM = 64  # arguments: a script with more is packed by hiredis, not by redis-py


def _body(args: Sequence[Any]) -> bytes:
    """RESP for `args` without the array header that hiredis puts first."""
    packed: bytes = hiredis.pack_command(tuple(args))
    return packed[packed.index(b"\n") + 1 :]


async def execute(client: Redis | Cluster, args: Sequence[Any], key: str) -> Any:
    """One command of many arguments, packed in slices; errors as redis-py raises them. On a
    cluster it goes to the master of `key`'s slot (every key of the command is in that slot)."""
    chunks = [b"*%d\r\n" % len(args), *await pieces(args, _body)]
    if isinstance(client, Cluster):
        async with client.turn():
            return await _on_cluster(client, chunks, key)
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        return await _send(connection, chunks)
    finally:
        await pool.release(connection)


async def _send(connection: Connection, chunks: list[bytes]) -> Any:
    try:
        await connection.send_packed_command(chunks)
        return await connection.read_response()
    except ResponseError:
        raise  # an error reply: the connection is in step and goes back to the pool
    except BaseException:
        await connection.disconnect()  # a half-written or half-read command: never reuse
        raise


async def _on_cluster(cluster: Cluster, chunks: list[bytes], key: str) -> Any:
    """`chunks` on a connection of the master of `key`'s slot. A MOVED (the command did not
    run) makes the client learn the layout again and try once more; a broken connection too,
    but then the caller gets the error (the command may have run)."""
    try:
        return await _on_master(cluster, chunks, key)
    except (MovedError, AskError, TryAgainError):
        await cluster.aclose()
        return await _on_master(cluster, chunks, key)


async def _on_master(cluster: Cluster, chunks: list[bytes], key: str) -> Any:
    await cluster.initialize()  # nothing to do unless the layout is to be learnt again
    node = cluster.get_node_from_key(key)
    if node is None:
        raise ConnectionError(f"no master serves {key}")
    connection = node.acquire_connection()
    try:
        return await _send(connection, chunks)
    except (ConnectionError, TimeoutError):
        await cluster.aclose()
        raise
    finally:
        node.release(connection)


async def node_pipeline(
    cluster: Cluster, node: ClusterNode, commands: Sequence[Sequence[Any]]
) -> list[Any]:
    """`commands` written at once on a connection of `node`, packed by hiredis a slice at a
    time (redis-py's packing was most of a cluster send's client CPU); each reply, an error
    reply as the exception redis-py makes of it (MOVED: MovedError...). A broken connection
    makes the cluster learn its layout again and is raised: some commands may have run."""
    packed = await pieces(
        commands, lambda some: b"".join(hiredis.pack_command(tuple(c)) for c in some)
    )
    connection = node.acquire_connection()
    try:
        await connection.send_packed_command(packed)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await connection.read_response())
            except ResponseError as e:  # the connection is in step: the next reply follows
                replies.append(e)
        return replies
    except BaseException as e:
        await connection.disconnect()  # a half-written or half-read pipeline: never reuse
        if isinstance(e, (ConnectionError, TimeoutError)):
            await cluster.aclose()
        raise
    finally:
        node.release(connection)


async def run_script(client: Redis, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """`script(keys, args)`, by EVALSHA, loading the script once if Redis does not know it."""
    if len(keys) + len(args) <= PACKED_FROM:
        return await script(keys=keys, args=args)
    command = ["EVALSHA", script.sha, len(keys), *keys, *args]
    try:
        return await execute(client, command, keys[0])
    except NoScriptError:
        await client.script_load(script.script)
        return await execute(client, command, keys[0])
