"""Events (API.md §3): one stored row per recipient, each with its own `evId`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


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
