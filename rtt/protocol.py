"""RTT frames, sans I/O: encode once per send, splice per recipient.

A pushed frame is `{"seq":N,` + head + mid + tail, where head/tail are the shared part of the
frame, serialized once per send, and mid is the (usually empty) per-recipient part. The same
bytes are produced live and on replay, so a resumed client sees exactly what a live one saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """The one JSON encoder rtt uses on the wire."""
    return orjson.dumps(value)


def loads(raw: str | bytes) -> Any:
    """The one JSON decoder rtt uses on the wire; raises ValueError on bad JSON."""
    return orjson.loads(raw)


@dataclass(frozen=True, slots=True)
class Frame:
    """The shared part of a pushed frame, encoded once per send."""

    head: bytes
    tail: bytes = b""

    def render(self, seq: int, mid: bytes = b"") -> bytes:
        """The frame for one recipient; seq 0 marks a live-only frame outside the stream."""
        if seq == 0:
            return b"{%b%b%b" % (self.head, mid, self.tail)
        return b'{"seq":%d,%b%b%b' % (seq, self.head, mid, self.tail)


def whole_frame(service: str, operation: str, data: Any) -> Frame:
    """A frame whose data is the same for every recipient (messages, updates, deletes)."""
    body = dumps({"service": service, "operation": operation, "data": data})
    return Frame(head=body[1:])


def spliced_frame(service: str, operation: str, shared_data: dict[str, Any]) -> Frame:
    """A frame whose data object starts with per-recipient fields (`mid`), then shared ones."""
    prefix = dumps({"service": service, "operation": operation})[1:-1]
    return Frame(head=prefix + b',"data":{', tail=dumps(shared_data)[1:] + b"}")


SLOT = "\x00rtt:per-recipient\x00"
_SLOT_JSON = orjson.dumps(SLOT)


def slotted_frame(service: str, operation: str, data: Any) -> Frame:
    """A frame with one per-recipient JSON value: wherever `data` holds SLOT, each recipient's
    own value (`mid`, e.g. `dumps(profile)`) is spliced in."""
    body = dumps({"service": service, "operation": operation, "data": data})[1:]
    head, found, tail = body.partition(_SLOT_JSON)
    if not found:
        raise ValueError("data holds no SLOT")
    return Frame(head, tail)


def data_fields(fields: dict[str, Any]) -> bytes:
    """Per-recipient leading fields of a spliced frame's data object."""
    return dumps(fields)[1:-1] + b","


def unsequenced(service: str, operation: str, data: Any) -> bytes:
    """A frame outside the profile stream (replies, RTT-only events, control frames)."""
    return dumps({"service": service, "operation": operation, "data": data})
