"""The system channel (API.md §8): one-way messages from a sender id of the app (RongCloud's
`fromUserId`) to up to `max_recipients_rongcloud` profiles, through the one deliver() path.

The dialect front door (rtt/api/rongcloud.py) only translates its wire shapes to this
operation; the rules live here and in rtt/domain/channel.py. A send is refused whole (nothing
stored, nothing pushed) when a field is wrong or the app's `rongcloud_rate_per_second` is spent
(a send to N recipients counts N, on every node together). Its `fromUserId` is recorded as a
system identity of the app, so a client can never send to it (40640).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rtt.core.deliver import deliver_channel
from rtt.core.node import Node, now_ms
from rtt.core.registry import SERVER, Caller, Operations
from rtt.domain import fields
from rtt.domain.channel import check_content, new_message_uid, push_text, utf8_size
from rtt.domain.messages import new_message
from rtt.domain.push import PushEntry
from rtt.errors import Reason, RttError, invalid, read_only
from rtt.protocol import SLOT, TooDeep, dumps, loads_untrusted, slotted_frame

operations = Operations()  # this module's operations; app.py builds the registry from them

MAX_PUSH_EXT_DEPTH = 16


@dataclass(frozen=True, slots=True)
class ChannelSend:
    """A validated send."""

    sender: str
    to: list[str]
    message_type: str
    content: str
    push_content: str | None
    push_body: str  # what a notification shows; "" = no notification
    push_data: str | None
    push_ext: dict[str, Any] | None
    content_available: bool
    disable_push: bool
    persist: bool
    counted: bool
    disable_update_last: bool


def _text(data: dict[str, Any], name: str, max_bytes: int) -> str | None:
    """An optional string of at most `max_bytes` of UTF-8 (40600 past it)."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    if utf8_size(value) > max_bytes:
        raise RttError(400, Reason.TOO_LARGE, f"{name} is larger than {max_bytes} bytes")
    return value


def _flag(data: dict[str, Any], name: str, default: int) -> bool:
    return bool(fields.integer(data, name, low=0, high=1, default=default))


def _push_ext(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = loads_untrusted(raw.encode(), MAX_PUSH_EXT_DEPTH)
    except (TooDeep, ValueError):
        value = None
    if not isinstance(value, dict):
        raise invalid("pushExt must be a JSON object")
    return value


def parse_send(caller: Caller, data: dict[str, Any]) -> ChannelSend:
    """Every rule of a system-channel send, checked before anything is written."""
    limits = caller.app.limits
    sender = str(fields.string(data, "fromUserId", max_length=fields.MAX_ID_LENGTH))
    to = fields.id_list(
        data, "toUserIds", max_count=limits.max_recipients_rongcloud, recipients=True
    )
    message_type = str(fields.string(data, "messageType", max_length=64))
    content = fields.required(data, "content")
    if not isinstance(content, str):
        raise invalid("content must be a string")
    parsed = check_content(message_type, content, limits.max_content_bytes)
    push_content = _text(data, "pushContent", limits.max_content_bytes)
    disable_push = fields.boolean(data, "disablePush", False)
    return ChannelSend(
        sender=sender,
        to=to,
        message_type=message_type,
        content=content,
        push_content=push_content,
        push_body="" if disable_push else push_text(message_type, parsed, push_content),
        push_data=_text(data, "pushData", limits.max_content_bytes),
        push_ext=_push_ext(_text(data, "pushExt", limits.max_content_bytes)),
        content_available=_flag(data, "contentAvailable", 0),
        disable_push=disable_push,
        persist=_flag(data, "shouldPersist", 1),
        counted=_flag(data, "isCounted", 1),
        disable_update_last=fields.boolean(data, "disableUpdateLastMsg", False),
    )


def _frame_data(send: ChannelSend, sent_at: int, msg_id: str | None) -> dict[str, Any]:
    """The `system/INCOMING` data (API.md §8); `messageUID` is each recipient's own (SLOT).
    `msgId` names the stored message for the brainCloud client operations."""
    data: dict[str, Any] = {
        "channelType": "SYSTEM",
        "targetId": send.sender,
        "messageUID": SLOT,
        "messageType": send.message_type,
        "content": send.content,
        "sentTime": sent_at,
    }
    if msg_id is not None:
        data["msgId"] = msg_id
    if send.push_content is not None:
        data["pushContent"] = send.push_content
    if send.disable_update_last:
        data["disableUpdateLastMsg"] = True
    if not send.counted:
        data["isCounted"] = False
    return data


def _pusher(
    send: ChannelSend, uids: dict[str, str], msg_id: str | None, sent_at: int
) -> Callable[[str], PushEntry] | None:
    """How an offline recipient's notification reads, or None when it gets none."""
    if send.disable_push or not send.push_body:
        return None
    title = send.sender
    if send.push_ext is not None and isinstance(send.push_ext.get("title"), str):
        title = send.push_ext["title"]
    shared: dict[str, Any] = {"messageType": send.message_type}
    if msg_id is not None:
        shared["msgId"] = msg_id
    if send.push_data is not None:
        shared["pushData"] = send.push_data
    if send.push_ext is not None:
        shared["pushExt"] = send.push_ext
    if send.content_available:
        shared["contentAvailable"] = 1
    body = send.push_body

    def push(profile: str) -> PushEntry:
        uid = uids[profile]
        data = dumps({"messageUID": uid, **shared})
        return PushEntry(profile, "system", msg_id or uid, title, body, data, sent_at)

    return push


@operations.add("system", "SYS_SEND_CHANNEL_MESSAGE", roles=(SERVER,), feature="messaging")
async def sys_send_channel_message(
    node: Node, caller: Caller, data: dict[str, Any]
) -> dict[str, Any]:
    """Send one system-channel message; one `messageUID` per (distinct) recipient."""
    send = parse_send(caller, data)
    channel = node.engine.channel
    rate = caller.app.limits.rongcloud_rate_per_second
    if not await channel.take_rate(caller.app_id, len(send.to), rate):
        node.metrics.rate_limited(caller.dialect)
        raise RttError(429, Reason.RATE_LIMITED, f"more than {rate} recipient-messages a second")
    if not await channel.add_sender(
        caller.app_id, send.sender, node.settings.rongcloud_max_senders
    ):
        raise invalid("the app has too many distinct fromUserIds (RTT_RONGCLOUD_MAX_SENDERS)")
    sent_at = now_ms()
    message = None
    if send.persist:
        content = dumps(
            {
                "channelType": "SYSTEM",
                "targetId": send.sender,
                "messageType": send.message_type,
                "content": send.content,
            }
        )
        message = new_message({"id": None, "name": send.sender}, send.to, content, sent_at)
    msg_id = message.msg_id if message is not None else None
    uids = {p: new_message_uid() for p in send.to}
    frame = slotted_frame("system", "INCOMING", _frame_data(send, sent_at, msg_id))
    mids = [dumps(uids[p]) for p in send.to]
    pusher = _pusher(send, uids, msg_id, sent_at)
    await deliver_channel(node, caller.app_id, caller.app, message, send.to, frame, mids, pusher)
    return {
        "msgId": msg_id,
        "messageUIDs": [{"userId": p, "messageUID": uids[p]} for p in send.to],
    }


async def refuse_channel_senders(node: Node, app_id: str, profiles: list[str]) -> None:
    """403/40640 if a client addresses a recorded system-channel sender: the channel is
    one-way, and its sender is a system identity of the app."""
    if await node.engine.channel.senders_among(app_id, profiles):
        raise read_only("a system channel's sender cannot be replied to")
