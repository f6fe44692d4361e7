"""System-channel messages (API.md §8): the rules a send must pass, with no I/O.

A message type is either one of RongCloud's built-in `RC:` types, whose content is a JSON
object with the fields that type needs, or a custom type (at most 32 characters, not starting
with `RC:`) whose content is any string. Content is at most the app's `max_content_bytes` of
UTF-8 (40600, RongCloud 1005); every other mistake is 40001 (RongCloud 1002).
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from rtt.errors import Reason, RttError, invalid
from rtt.protocol import TooDeep, loads_untrusted

BUILT_IN_PREFIX = "RC:"
MAX_TYPE_LENGTH = 32
MAX_CONTENT_DEPTH = 32  # nesting of a built-in type's content JSON
PREVIEW_CHARACTERS = 200  # a push body taken from RC:TxtMsg text

_STR, _NUM = (str,), (int, float)
# RongCloud's built-in types and the content fields each needs (name → accepted JSON types).
BUILT_IN_TYPES: dict[str, dict[str, tuple[type, ...]]] = {
    "RC:TxtMsg": {"content": _STR},
    "RC:ImgMsg": {"content": _STR, "imageUri": _STR},
    "RC:GIFMsg": {"remoteUrl": _STR, "width": _NUM, "height": _NUM},
    "RC:VcMsg": {"content": _STR, "duration": _NUM},
    "RC:HQVCMsg": {"remoteUrl": _STR, "duration": _NUM},
    "RC:ImgTextMsg": {"title": _STR, "content": _STR},
    "RC:FileMsg": {"name": _STR, "size": _NUM, "type": _STR, "fileUrl": _STR},
    "RC:LBSMsg": {"content": _STR, "latitude": _NUM, "longitude": _NUM, "poi": _STR},
    "RC:SightMsg": {"sightUrl": _STR, "content": _STR, "duration": _NUM, "size": _NUM},
    "RC:CombineMsg": {"remoteUrl": _STR},
    "RC:ReferenceMsg": {"content": _STR, "referMsgUserId": _STR, "objName": _STR},
    "RC:CmdMsg": {"name": _STR},
    "RC:CmdNtf": {"name": _STR},
    "RC:InfoNtf": {"message": _STR},
    "RC:ContactNtf": {"operation": _STR, "sourceUserId": _STR, "targetUserId": _STR},
    "RC:ProfileNtf": {"operation": _STR},
    "RC:GrpNtf": {"operatorUserId": _STR, "operation": _STR, "message": _STR},
}


def utf8_size(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def check_content(message_type: str, content: str, max_bytes: int) -> dict[str, Any] | None:
    """Refuse a type or content RongCloud would refuse; the parsed content of a built-in type
    (None for a custom type, whose content is opaque)."""
    if len(message_type) > MAX_TYPE_LENGTH:
        raise invalid(f"messageType is longer than {MAX_TYPE_LENGTH} characters")
    if utf8_size(content) > max_bytes:
        raise RttError(400, Reason.TOO_LARGE, f"content is larger than {max_bytes} bytes")
    if not message_type.startswith(BUILT_IN_PREFIX):
        return None
    needs = BUILT_IN_TYPES.get(message_type)
    if needs is None:
        raise invalid(f"{message_type} is no built-in type; custom types must not start with RC:")
    try:
        parsed = loads_untrusted(content.encode("utf-8", "surrogatepass"), MAX_CONTENT_DEPTH)
    except (TooDeep, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        raise invalid(f"content of {message_type} must be a JSON object")
    for name, kinds in needs.items():
        value = parsed.get(name)
        if not isinstance(value, kinds) or isinstance(value, bool):
            kind = "a string" if kinds is _STR else "a number"
            raise invalid(f"content of {message_type} needs {name!r} as {kind}")
    return parsed


def push_text(message_type: str, parsed: dict[str, Any] | None, push_content: str | None) -> str:
    """What a notification shows: pushContent, else an RC:TxtMsg's text ("" = no notification:
    custom and notification types without pushContent are not pushed, as on RongCloud)."""
    if push_content:
        return push_content
    if message_type == "RC:TxtMsg" and parsed is not None:
        return str(parsed["content"])[:PREVIEW_CHARACTERS]
    return ""


def new_message_uid() -> str:
    """A per-recipient message UID shaped like RongCloud's (`XXXX-XXXX-XXXX-XXXX`, 80 random
    bits): unique across nodes without any coordination."""
    chars = base64.b32encode(secrets.token_bytes(10)).decode()
    return "-".join(chars[i : i + 4] for i in range(0, 16, 4))
