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


def json_strings(values: list[str]) -> list[bytes]:
    """`[dumps(v) for v in values]`, for a long list in two C calls: one encoding of the whole
    list, split at its commas. A string holding a comma, a quote or a backslash could put a
    comma inside an element, so such a list is encoded one by one. One call per recipient cost
    a 100 000-recipient send 20-200 ms of the event loop here (orjson's per-call overhead)."""
    joined = "".join(values)
    if "," in joined or '"' in joined or "\\" in joined:
        return [dumps(v) for v in values]
    return dumps(values)[1:-1].split(b",") if values else []


def loads(raw: str | bytes) -> Any:
    """The JSON decoder for what rtt wrote itself; raises ValueError on bad JSON."""
    return orjson.loads(raw)


class TooDeep(ValueError):
    """JSON nested deeper than the node accepts (RTT_MAX_JSON_DEPTH)."""


def loads_untrusted(raw: bytes, max_depth: int) -> Any:
    """Decode what a client sent, refusing nesting deeper than `max_depth` (TooDeep) as well as
    bad JSON (ValueError). The limit keeps every accepted value re-encodable: orjson encodes at
    most 254 levels, and a deeper value would fail later, after it was accepted.

    Counting brackets in C bounds the depth from above, so the walk only runs for bodies with
    more than `max_depth` brackets, and stops at the first level too deep."""
    value = orjson.loads(raw)
    if raw.count(b"[") + raw.count(b"{") > max_depth and _deeper_than(value, max_depth):
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return value


def _deeper_than(value: Any, max_depth: int) -> bool:
    level: list[Any] = [value]
    for _ in range(max_depth):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


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
