"""Messaging operations (API.md §2 Sys API, §5 client API) on top of deliver()."""

from __future__ import annotations

from typing import Any

import orjson

from rtt.core.channel import refuse_channel_senders
from rtt.core.deliver import deliver_message, publish_change
from rtt.core.node import Node, now_ms
from rtt.core.recipients import split_recipients
from rtt.core.registry import CLIENT, SERVER, Caller, Operations
from rtt.domain import fields
from rtt.domain.identities import is_system_identity
from rtt.domain.messages import (
    BOXES,
    Message,
    content_bytes,
    new_message,
    system_sender,
)
from rtt.domain.paging import cut_short, decode_context, page_result, parse_context
from rtt.engines.base import MessageNotFound, VersionMismatch
from rtt.errors import Reason, RttError, invalid, not_found, read_only
from rtt.protocol import whole_frame

operations = Operations()  # this module's operations; app.py builds the registry from them

MAX_IDS = 1000
LATEST_ATTEMPTS = 10  # times msgVer -1 re-reads the version after a concurrent change won


def _msgbox(data: dict[str, Any]) -> str:
    box = fields.string(data, "msgbox", max_length=16)
    if box not in BOXES:
        raise invalid(f"msgbox must be one of {', '.join(BOXES)}")
    return str(box)


def _msg_ids(data: dict[str, Any]) -> list[str]:
    return fields.id_list(data, "msgIds", max_count=MAX_IDS)


def _version(data: dict[str, Any]) -> int:
    return int(fields.integer(data, "msgVer", low=-1, high=2**53))


def _version_error() -> RttError:
    return RttError(400, Reason.VERSION_MISMATCH, "msgVer does not match the message's version")


async def _one(node: Node, caller: Caller, msg_id: str) -> Message | None:
    found, _ = await node.engine.store.get_messages(
        caller.app_id, [msg_id], node.settings.reply_max_bytes
    )
    return found[0] if found else None


async def _current(node: Node, caller: Caller, msg_id: str, wanted: int) -> Message:
    """The message, checked against the caller's msgVer (-1 accepts any)."""
    found = await _one(node, caller, msg_id)
    if found is None:
        raise not_found()
    if wanted != -1 and found.msg_ver != wanted:
        raise _version_error()
    return found


# --- Sys API (servers) ---------------------------------------------------------------------


async def _system_send(
    node: Node, caller: Caller, data: dict[str, Any], content: bytes
) -> dict[str, Any]:
    """A malformed profile id is reported in `errorProfiles` and the others get the message
    (API.md §2: never abort the rest); a send with no well-formed recipient at all is 40001."""
    raw = fields.raw_list(
        data, "toProfileIds", max_count=caller.app.limits.max_recipients_s2s, recipients=True
    )
    sender = system_sender(data.get("fromJson"))
    to, errors = await split_recipients(raw)
    if not to:
        raise invalid(
            f"toProfileIds entries must be strings of 1 to {fields.MAX_ID_LENGTH} characters"
        )
    message = new_message(sender, to, content, now_ms())
    await deliver_message(node, caller.app_id, caller.app, message, to, None)
    if errors:
        return {"msgId": message.msg_id, "errorCount": len(errors), "errorProfiles": errors}
    return {"msgId": message.msg_id}


@operations.add("messaging", "SYS_SEND_MESSAGE", roles=(SERVER,), feature="messaging")
async def sys_send_message(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    content = content_bytes(
        fields.required(data, "contentJson"), caller.app.limits.max_content_bytes
    )
    return await _system_send(node, caller, data, content)


def _simple_content(data: dict[str, Any], max_bytes: int) -> bytes:
    text = fields.required(data, "text")
    if not isinstance(text, str):
        raise invalid("text must be a string")
    return content_bytes({"text": text}, max_bytes, "text")


@operations.add("messaging", "SYS_SEND_MESSAGE_SIMPLE", roles=(SERVER,), feature="messaging")
async def sys_send_message_simple(
    node: Node, caller: Caller, data: dict[str, Any]
) -> dict[str, Any]:
    content = _simple_content(data, caller.app.limits.max_content_bytes)
    return await _system_send(node, caller, data, content)


@operations.add("messaging", "SYS_GET_MESSAGES", roles=(SERVER,), feature="messaging")
async def sys_get_messages(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    ids = _msg_ids(data)
    found, more = await node.engine.store.get_messages(
        caller.app_id, ids, node.settings.reply_max_bytes
    )
    items = [m.item() for m in found]
    return cut_short({"requested": len(ids), "actual": len(found), "items": items}, more)


async def _page(
    node: Node, caller: Caller, profile: str | None, data: dict[str, Any], *, offset: bool
) -> dict[str, Any]:
    """A page of `profile`'s box entries, or of all the app's messages (Sys) when None."""
    scope = "sys" if profile is None else "box"
    context = fields.required(data, "context")
    if offset:
        query = decode_context(scope, context, fields.required(data, "pageOffset"))
    else:
        query = parse_context(scope, context)
    count, items = await node.engine.store.page(
        caller.app_id, profile, query, node.settings.reply_max_bytes
    )
    return page_result(query, count, [i.item() for i in items])


@operations.add("messaging", "SYS_GET_MESSAGES_PAGE", roles=(SERVER,), feature="messaging")
async def sys_get_messages_page(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    return await _page(node, caller, None, data, offset=False)


@operations.add("messaging", "SYS_GET_MESSAGES_PAGE_OFFSET", roles=(SERVER,), feature="messaging")
async def sys_get_messages_page_offset(
    node: Node, caller: Caller, data: dict[str, Any]
) -> dict[str, Any]:
    return await _page(node, caller, None, data, offset=True)


@operations.add("messaging", "SYS_UPDATE_MESSAGE", roles=(SERVER,), feature="messaging")
async def sys_update_message(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    msg_id = fields.string(data, "msgId", max_length=fields.MAX_ID_LENGTH)
    wanted = _version(data)
    content = content_bytes(
        fields.required(data, "contentJson"), caller.app.limits.max_content_bytes
    )
    for _ in range(LATEST_ATTEMPTS):
        current = await _current(node, caller, msg_id, wanted)
        now, version = now_ms(), current.msg_ver + 1
        frame = whole_frame(
            "messaging",
            "UPDATED",
            {"msgId": msg_id, "msgVer": version, "msgUp": now, "content": orjson.Fragment(content)},
        )
        try:
            targets = await node.engine.store.update_message(
                caller.app_id, msg_id, current.msg_ver, content, now, frame
            )
        except VersionMismatch:
            if wanted != -1:
                raise _version_error() from None
            continue  # -1 never goes stale: apply to the version it has now
        except MessageNotFound:
            raise not_found() from None
        await publish_change(node, caller.app_id, frame, targets)
        return {"requested": 1, "actual": 1, "msgId": msg_id}
    raise _version_error()


async def _sys_delete(node: Node, caller: Caller, message: Message) -> bool:
    frame = whole_frame(
        "messaging", "DELETED", {"msgId": message.msg_id, "msgVer": message.msg_ver}
    )
    try:
        targets = await node.engine.store.delete_message(
            caller.app_id, message.msg_id, message.msg_ver, frame
        )
    except MessageNotFound:
        return False
    await publish_change(node, caller.app_id, frame, targets)
    return True


async def _delete_at(node: Node, caller: Caller, msg_id: str, wanted: int) -> bool:
    """Delete the message at version `wanted` (-1: whichever it has, re-read up to
    LATEST_ATTEMPTS times while concurrent changes win, then 40598); False if it is gone.
    A VersionMismatch never escapes: it would answer a plain-text 500."""
    for _ in range(LATEST_ATTEMPTS):
        current = await _one(node, caller, msg_id)
        if current is None:
            return False
        if wanted != -1 and current.msg_ver != wanted:
            raise _version_error()
        try:
            return await _sys_delete(node, caller, current)
        except VersionMismatch:
            if wanted != -1:
                raise _version_error() from None
    raise _version_error()


@operations.add("messaging", "SYS_DELETE_MESSAGE", roles=(SERVER,), feature="messaging")
async def sys_delete_message(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    msg_id = fields.string(data, "msgId", max_length=fields.MAX_ID_LENGTH)
    if not await _delete_at(node, caller, msg_id, _version(data)):
        raise not_found()
    return {}


@operations.add("messaging", "SYS_DELETE_MESSAGES", roles=(SERVER,), feature="messaging")
async def sys_delete_messages(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    ids = _msg_ids(data)
    actual = 0
    for msg_id in ids:  # one at a time: a delete needs the version, not all the contents at once
        actual += await _delete_at(node, caller, msg_id, -1)  # whatever version it has now
    return {"requested": len(ids), "actual": actual}


# --- client API (profiles) -----------------------------------------------------------------


@operations.add("messaging", "GET_MESSAGE_BOXES", roles=(CLIENT,), feature="messaging")
async def get_message_boxes(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    return {"items": list(BOXES)}


@operations.add("messaging", "GET_MESSAGE_COUNTS", roles=(CLIENT,), feature="messaging")
async def get_message_counts(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    return await node.engine.store.counts(caller.app_id, caller.client_profile())


@operations.add("messaging", "GET_MESSAGES", roles=(CLIENT,), feature="messaging", reads_many=True)
async def get_messages(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """The entries in request order, cut at reply_max_bytes: a reply cut short says
    `moreAfter: true`, and the caller asks again for the ids after its last item."""
    box, ids = _msgbox(data), _msg_ids(data)
    mark = fields.boolean(data, "markAsRead", fields.boolean(data, "markMessageRead", False))
    profile = caller.client_profile()
    store, budget = node.engine.store, node.settings.reply_max_bytes
    entries, missing = await store.get_entries(caller.app_id, profile, box, ids, None, budget)
    if missing:
        raise not_found(f"message not found in {box}: {', '.join(sorted(missing)[:10])}")
    if mark:  # only once every id is known, so a refused request marks nothing
        entries, missing = await store.get_entries(
            caller.app_id, profile, box, ids, now_ms(), budget
        )
    reply = {"requested": len(ids), "actual": len(entries), "items": [e.item() for e in entries]}
    return cut_short(reply, len(entries) + len(missing) < len(ids))


@operations.add(
    "messaging", "GET_MESSAGES_PAGE", roles=(CLIENT,), feature="messaging", reads_many=True
)
async def get_messages_page(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    return await _page(node, caller, caller.client_profile(), data, offset=False)


@operations.add(
    "messaging", "GET_MESSAGES_PAGE_OFFSET", roles=(CLIENT,), feature="messaging", reads_many=True
)
async def get_messages_page_offset(
    node: Node, caller: Caller, data: dict[str, Any]
) -> dict[str, Any]:
    return await _page(node, caller, caller.client_profile(), data, offset=True)


async def _refuse_system_replies(
    node: Node, caller: Caller, to: list[str], data: dict[str, Any]
) -> str | None:
    """System channels are one-way (40640): no sending to the app itself, no replying to it."""
    identities = caller.app.system_identities
    if any(is_system_identity(p, identities) for p in to):
        raise read_only()
    await refuse_channel_senders(node, caller.app_id, to)
    reply_to = data.get("replyTo")
    if reply_to is None:
        return None
    if not fields.is_profile_id(reply_to):
        raise invalid("replyTo must be a message id")
    found = await _one(node, caller, reply_to)
    if found is None:
        raise not_found("replyTo names no message")
    sender = found.from_id
    if sender is None or is_system_identity(sender, identities):
        raise read_only()
    return str(reply_to)


async def _client_send(
    node: Node, caller: Caller, data: dict[str, Any], content: bytes
) -> dict[str, Any]:
    profile = caller.client_profile()
    raw_to = fields.raw_list(
        data, "toProfileIds", max_count=caller.app.limits.max_recipients_user, recipients=True
    )
    if any(v is None for v in raw_to):
        raise read_only()  # null is the brainCloud id of the system sender
    to = fields.distinct_ids(raw_to, "toProfileIds")
    reply_to = await _refuse_system_replies(node, caller, to, data)
    sender = {"id": profile, "name": caller.name or profile}
    message = new_message(sender, to, content, now_ms(), reply_to)
    await deliver_message(node, caller.app_id, caller.app, message, to, profile)
    return {"requested": len(raw_to), "actual": len(to), "msgId": message.msg_id}


@operations.add("messaging", "SEND_MESSAGE", roles=(CLIENT,), feature="messaging")
async def send_message(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    content = content_bytes(
        fields.required(data, "contentJson"), caller.app.limits.max_content_bytes
    )
    return await _client_send(node, caller, data, content)


@operations.add("messaging", "SEND_MESSAGE_SIMPLE", roles=(CLIENT,), feature="messaging")
async def send_message_simple(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    content = _simple_content(data, caller.app.limits.max_content_bytes)
    return await _client_send(node, caller, data, content)


@operations.add("messaging", "MARK_MESSAGES_READ", roles=(CLIENT,), feature="messaging")
async def mark_messages_read(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    box, ids = _msgbox(data), _msg_ids(data)
    actual = await node.engine.store.mark_read(
        caller.app_id, caller.client_profile(), box, ids, now_ms()
    )
    return {"requested": len(ids), "actual": actual}


@operations.add("messaging", "DELETE_MESSAGES", roles=(CLIENT,), feature="messaging")
async def delete_messages(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    box, ids = _msgbox(data), _msg_ids(data)
    actual = await node.engine.store.delete_entries(
        caller.app_id, caller.client_profile(), box, ids
    )
    return {"requested": len(ids), "actual": actual}
