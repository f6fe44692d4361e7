"""The Lua scripts, loaded from `lua/*.lua` next to this file and registered once per client,
each behind the checks of `lua/_checks.lua` (a script validates every key before it writes), the
outbox writer of `lua/_outbox.lua` and the stream bound of `lua/_stream.lua`."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

LUA = Path(__file__).with_name("lua")


def script(client: Redis | RedisCluster, name: str) -> AsyncScript:
    """`lua/<name>.lua` registered on `client`, called with keys and args, run by EVALSHA, after
    the shared functions every script may call (`_checks.lua`, `_outbox.lua`, `_stream.lua`)."""
    parts = ("_checks", "_outbox", "_stream")
    shared = "".join((LUA / f"{part}.lua").read_text() for part in parts)
    return client.register_script(shared + (LUA / f"{name}.lua").read_text())


class Scripts:
    """The store's scripts, one per `.lua` file."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self.message_meta = script(client, "message_meta")
        self.epoch = script(client, "epoch")
