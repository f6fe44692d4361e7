"""Messages and their box entries (API.md §3), and the rules a send must pass.

Content is serialized once, at validation, and carried as raw JSON (`orjson.Fragment`) from
there on: stored, pushed and returned without being encoded again.
"""

from __future__ import annotations

import functools
import os
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from rtt.domain.paging import item_bytes
from rtt.errors import Reason, RttError, invalid
from rtt.protocol import dumps

INBOX = "inbox"
SENT = "sent"
BOXES = (INBOX, SENT)


def new_id() -> str:
    """Globally unique, so ids never collide across nodes or restarts."""
    return uuid.uuid4().hex


def new_ids(count: int) -> list[str]:
    """`count` ids as unique as `new_id`'s (128 random bits in 32 hex digits each), from one
    read of the system's random source: uuid4() per id cost a 100 000-recipient event send
    220 ms of the event loop, this costs 20."""
    digits = os.urandom(16 * count).hex()
    return [digits[i : i + 32] for i in range(0, 32 * count, 32)]


@dataclass(slots=True)
class Message:
    """The shared part of a message: one per send, whatever the number of recipients."""

    msg_id: str
    sender: dict[str, Any]
    to: list[str]
    sent_at: int
    content: bytes
    msg_cr: int
    msg_up: int
    msg_ver: int
    reply_to: str | None = None

    @property
    def from_id(self) -> str | None:
        return self.sender.get("id")

    def to_seen_by(self, profile: str) -> Any:
        """A system message's recipients are private: each sees only itself in `to` (a
        broadcast must not hand every recipient the list of all the others). A profile's
        message shows its whole `to`, like e-mail."""
        return [profile] if self.from_id is None else self.to

    def body(self, to: Any = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "from": self.sender,
            "to": self.to if to is None else to,
            "sentAt": self.sent_at,
            "content": orjson.Fragment(self.content),
        }
        if self.reply_to is not None:
            body["replyTo"] = self.reply_to
        return body

    def item(self) -> dict[str, Any]:
        """What the Sys API returns: the shared content without any box state."""
        return {
            "msgId": self.msg_id,
            "msgCr": self.msg_cr,
            "msgUp": self.msg_up,
            "msgVer": self.msg_ver,
            "message": self.body(),
        }


@dataclass(slots=True)
class BoxEntry:
    """One profile's view of a message: which box, read state, its own timestamps and version."""

    profile: str
    msgbox: str
    read: bool
    mb_cr: int
    mb_up: int
    mb_ver: int
    message: Message

    def item(self) -> dict[str, Any]:
        """The inbox entry of API.md §3, as read and as pushed."""
        m = self.message
        return {
            "msgbox": self.msgbox,
            "msgId": m.msg_id,
            "read": self.read,
            "mbCr": self.mb_cr,
            "mbUp": self.mb_up,
            "mbVer": self.mb_ver,
            "msgCr": m.msg_cr,
            "msgUp": m.msg_up,
            "msgVer": m.msg_ver,
            "message": m.body(self.to_seen()),
        }

    def to_seen(self) -> Any:
        """The sender's own sent entry shows every recipient; an inbox entry, what
        Message.to_seen_by allows."""
        if shows_whole_to(self.msgbox, self.message.from_id):
            return self.message.to
        return [self.profile]


def shows_whole_to(msgbox: str | None, from_id: str | None) -> bool:
    """Whether an item shows the message's whole `to`: the Sys view (msgbox None), a sender's
    own sent entry and a profile's message do; a system message's inbox entry shows only its
    reader (Message.to_seen_by)."""
    return msgbox != INBOX or from_id is not None


def entry_bytes(
    msgbox: str | None,
    profile: str | None,
    from_id: str | None,
    reply_to: str | None,
    content: int,
    sender: int,
    to: int,
) -> int:
    """An upper bound of the JSON size of a message's item, from the stored sizes of its
    content, sender and `to` (as serialized): a box entry of `profile` in `msgbox`, or the Sys
    item when msgbox is None. Engines cut replies with it before reading any content."""
    shown_to = to if shows_whole_to(msgbox, from_id) else _listed_bytes(profile)
    return item_bytes(content, sender, shown_to, len(dumps(reply_to)) if reply_to else 0)


@functools.lru_cache(maxsize=1024)
def _listed_bytes(profile: str | None) -> int:
    """The size of `[profile]` as serialized: what a system message's inbox entry shows."""
    return len(dumps([profile]))


def content_bytes(content: object, max_bytes: int, name: str = "contentJson") -> bytes:
    """Serialize content once and enforce the app's size limit (40600)."""
    if not isinstance(content, dict):
        raise invalid(f"{name} must be an object")
    raw = dumps(content)
    if len(raw) > max_bytes:
        raise RttError(400, Reason.TOO_LARGE, f"{name} is larger than {max_bytes} bytes")
    return raw


def system_sender(from_json: object) -> dict[str, Any]:
    """A brainCloud system `fromJson`: id must be null (40617), name is required (40618)."""
    if not isinstance(from_json, dict):
        raise RttError(400, Reason.BAD_FROM_NAME, "fromJson must be an object with a name")
    if from_json.get("id") is not None:
        raise RttError(400, Reason.BAD_FROM_ID, "fromJson.id must be null for a system message")
    name = from_json.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RttError(400, Reason.BAD_FROM_NAME, "fromJson.name is required")
    if len(name) > 256:
        raise RttError(400, Reason.BAD_FROM_NAME, "fromJson.name is longer than 256 characters")
    sender: dict[str, Any] = {"id": None, "name": name}
    pic = from_json.get("pic")
    if pic is not None:
        if not isinstance(pic, str) or len(pic) > 2048:
            raise invalid("fromJson.pic must be a string of at most 2048 characters")
        sender["pic"] = pic
    return sender


def new_message(
    sender: dict[str, Any], to: list[str], content: bytes, now: int, reply_to: str | None = None
) -> Message:
    return Message(new_id(), sender, to, now, content, now, now, 1, reply_to)


def fresh_inbox_entry(message: Message, profile: str) -> BoxEntry:
    """The entry a recipient gets at send time: the same for all but, for system messages,
    the `to` list, which the frame splices in per recipient."""
    return BoxEntry(profile, INBOX, False, message.msg_cr, message.msg_cr, 1, message)
