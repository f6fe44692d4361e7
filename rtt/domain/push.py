"""Push outbox entries: what an offline recipient should be notified of (API.md §2).

An entry is written in the same store transaction as the item it announces, so a message is
never stored without its notification nor announced without being stored.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from rtt.domain.paging import item_bytes
from rtt.protocol import dumps


class PushEntry(NamedTuple):
    """One notification owed. A tuple of plain values on purpose: the garbage collector stops
    tracking such a tuple at its first pass, so the 100 000 entries of a large send are not
    promoted to the oldest generation and do not set off full collections (pauses of tens of
    ms for every socket on the node) as a tracked object per entry did."""

    profile: str
    kind: str  # "message" | "event" | "system"
    ref: str
    title: str
    body: str
    data: bytes
    created_at: int
    push_id: str = ""
    attempts: int = 0

    def item(self) -> dict[str, Any]:
        return {
            "pushId": self.push_id,
            "profileId": self.profile,
            "kind": self.kind,
            "ref": self.ref,
            "title": self.title,
            "body": self.body,
            "data": orjson.Fragment(self.data),
            "createdAt": self.created_at,
            "attempts": self.attempts,
        }


def push_bytes(profile: str, kind: str, ref: str, title: str, body: str, data: int) -> int:
    """An upper bound of a push entry item's JSON size, from its strings and its data's size."""
    return item_bytes(*(len(dumps(s)) for s in (profile, kind, ref, title, body)), data)


def preview(content: dict[str, Any], limit: int = 200) -> str:
    """A notification body from message content: its text, else its subject, cut short."""
    for key in ("text", "subject"):
        value = content.get(key)
        if isinstance(value, str):
            return value[:limit]
    return ""
