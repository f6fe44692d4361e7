"""The Lua scripts, loaded from `lua/*.lua` next to this file and registered once per client."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

LUA = Path(__file__).with_name("lua")


class Scripts:
    """One registered script per `.lua` file; called with keys and args, run by EVALSHA."""

    def __init__(self, client: Redis) -> None:
        self.append_message = self._load(client, "append_message")
        self.append_events = self._load(client, "append_events")
        self.change_message = self._load(client, "change_message")
        self.box_entries = self._load(client, "box_entries")
        self.message_meta = self._load(client, "message_meta")
        self.epoch = self._load(client, "epoch")

    @staticmethod
    def _load(client: Redis, name: str) -> AsyncScript:
        return client.register_script((LUA / f"{name}.lua").read_text())
