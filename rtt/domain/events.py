"""Events (API.md §3): one stored row per recipient, each with its own `evId`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from rtt.domain.paging import item_bytes
from rtt.protocol import dumps


@dataclass(slots=True)
class Event:
    ev_id: str
    event_type: str
    from_id: str | None
    to_id: str
    created_at: int
    data: bytes

    def item(self) -> dict[str, Any]:
        return {
            "evId": self.ev_id,
            "eventType": self.event_type,
            "fromPlayerId": self.from_id,
            "toPlayerId": self.to_id,
            "createdAt": self.created_at,
            "eventData": orjson.Fragment(self.data),
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Event:
        """The event whose `item()` this is (the redis engine stores events as their items)."""
        return cls(
            item["evId"],
            item["eventType"],
            item["fromPlayerId"],
            item["toPlayerId"],
            item["createdAt"],
            dumps(item["eventData"]),
        )


def event_bytes(event_type: str, from_id: str | None, to_id: str, data: int) -> int:
    """An upper bound of an event item's JSON size, from its strings and its data's size."""
    return item_bytes(len(dumps(event_type)), len(dumps(from_id)), len(dumps(to_id)), data)
