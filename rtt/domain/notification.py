"""What a push notification says (API.md §11), built from outbox entries with no I/O.

One notification per (item, offline recipient). A burst for one profile is collapsed: the
entries a dispatcher holds for that profile become one notification of the newest item with
`count`. Each (item, destination) has a dedupe key the engine records once the destination took
it, so retrying an entry never notifies a destination twice.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from rtt.domain.push import PushEntry
from rtt.protocol import loads

WEBHOOK = "webhook"
PLATFORMS = ("fcm", "apns")
DEVICE_TYPES = {"IOS": "apns", "ANG": "fcm"}  # brainCloud deviceType → platform


class Delivery(StrEnum):
    """What a provider said about one notification to one destination."""

    DELIVERED = "delivered"
    RETRY = "retry"  # anything else: try again later
    GONE = "gone"  # the device token is no longer valid: forget the device


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery: Delivery
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Notification:
    """The newest item of a profile's burst; `count` items are announced by it."""

    app: str
    profile: str
    kind: str
    id: str
    title: str
    body: str
    data: dict[str, Any]
    push_ext: Any
    content_available: bool
    created_at: int
    count: int
    key: str  # the newest item's identity: a stable id receivers can deduplicate on

    def wire(self) -> dict[str, Any]:
        """The notification object of API.md §11 (the webhook body)."""
        body: dict[str, Any] = {
            "appId": self.app,
            "profileId": self.profile,
            "kind": self.kind,
            "id": self.id,
            "title": self.title,
            "body": self.body,
            "data": self.data,
            "createdAt": self.created_at,
        }
        if self.push_ext is not None:
            body["pushExt"] = self.push_ext
        if self.content_available:
            body["contentAvailable"] = True
        if self.count > 1:
            body["count"] = self.count
        return body


def item_key(entry: PushEntry) -> str:
    """An item as one recipient's: the same whichever outbox entry (or retry) carries it."""
    return f"{entry.profile}\x00{entry.kind}\x00{entry.ref}"


def dedupe_key(entry: PushEntry, destination: str) -> str:
    """(item, destination), hashed to a fixed length for the engine's records."""
    raw = f"{item_key(entry)}\x00{destination}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def collapse_id(app: str, profile: str) -> str:
    """One collapse key per profile (FCM collapse_key, APNs apns-collapse-id ≤ 64 bytes): a
    device shows the latest of a profile's notifications, not a pile of them."""
    raw = f"{app}\x00{profile}".encode("utf-8", "surrogatepass")
    return "rtt-" + hashlib.blake2b(raw, digest_size=12).hexdigest()


def collapse(app: str, entries: list[PushEntry]) -> Notification:
    """One notification for a profile's entries: the newest one's content, with their count.
    RongCloud's pushExt and contentAvailable ride in an entry's data; they become fields of
    their own, as API.md §11 names them."""
    newest = entries[0]
    for entry in entries:  # oldest first: on a tie the later entry is the newer
        if entry.created_at >= newest.created_at:
            newest = entry
    data = loads(newest.data)
    push_ext: Any = None
    content_available = False
    if newest.kind == "system" and isinstance(data, dict):
        push_ext = data.pop("pushExt", None)
        content_available = bool(data.pop("contentAvailable", 0))
    return Notification(
        app=app,
        profile=newest.profile,
        kind=newest.kind,
        id=newest.ref,
        title=newest.title,
        body=newest.body,
        data=data,
        push_ext=push_ext,
        content_available=content_available,
        created_at=newest.created_at,
        count=len(entries),
        key=dedupe_key(newest, ""),
    )


def dead_item(entry: PushEntry, error: str, attempts: int, now_ms: int) -> bytes:
    """A dead letter as both engines store it and push/GET_DEAD_LETTERS returns it: the outbox
    entry, how many attempts it had, the last error and when it was given up."""
    item = entry.item()
    item.update(attempts=attempts, error=error, failedAt=now_ms)
    return orjson.dumps(item)


def backoff(attempts: int, base: float, cap: float) -> float:
    """Seconds before retry number `attempts` (1 = the first): exponential, capped, with
    "equal jitter" (half fixed, half random) so failed entries do not retry in lockstep."""
    delay = min(cap, base * 2 ** min(attempts - 1, 62))
    return float(delay / 2 + random.uniform(0, delay / 2))
