"""Messages addressed by their integer number (API.md §9's `Id`), sent by a server on behalf of
a profile: what the Nexudus door (rtt/api/nexudus.py) translates its records onto.

Every stored message has a number, whichever door sent it (engines' MessageNumbers), so these
operations list, read, change and delete the same messages the brainCloud operations do: a
create goes through deliver() like any send (the sender's `sent` box, recipients' inboxes,
`messaging/INCOMING`), a change through SYS_UPDATE_MESSAGE / SYS_DELETE_MESSAGE (`UPDATED`,
`DELETED`). Served to servers only, under the service `chatUserMessages`.
"""

from __future__ import annotations

from typing import Any

from rtt.core.deliver import deliver_message
from rtt.core.node import Node, now_ms
from rtt.core.registry import SERVER, Caller, Operations, dispatch
from rtt.domain import fields
from rtt.domain.messages import Message, content_bytes, new_message
from rtt.domain.paging import MAX_PAGE, MAX_ROWS_PER_PAGE, Query
from rtt.errors import Reason, RttError, not_found

operations = Operations()  # this module's operations; app.py builds the registry from them

SERVICE = "chatUserMessages"
MAX_NUMBER = 2**63 - 1
ORDERS = ("id", "msgCr", "msgUp")


class Unchangeable(RttError):
    """400/40001: a change names another sender or other recipients than the message has; a
    stored message keeps who sent it and who holds it. `field` is the request field."""

    def __init__(self, field: str) -> None:
        super().__init__(
            400, Reason.INVALID_REQUEST, f"{field} of a stored message cannot be changed"
        )
        self.field = field


def _number(data: dict[str, Any]) -> int:
    return int(fields.integer(data, "id", low=1, high=MAX_NUMBER))


def _recipients(data: dict[str, Any], max_count: int) -> list[str] | None:
    """`toProfileIds` if given: distinct profile ids, possibly none (a message kept only in
    its sender's `sent` box), at most `max_count` as sent (40621)."""
    if data.get("toProfileIds") is None:
        return None
    if data["toProfileIds"] == []:
        return []
    return fields.id_list(data, "toProfileIds", max_count=max_count, recipients=True)


def _numbered(number: int | None, message: Message) -> dict[str, Any]:
    return {"id": number, **message.item()}


async def _message_id(node: Node, caller: Caller, number: int) -> str:
    msg_id = await node.engine.numbers.message_id(caller.app_id, number)
    if msg_id is None:
        raise not_found()
    return msg_id


async def _message(node: Node, caller: Caller, msg_id: str) -> Message:
    found, _ = await node.engine.store.get_messages(
        caller.app_id, [msg_id], node.settings.reply_max_bytes
    )
    if not found:
        raise not_found()
    return found[0]


@operations.add(SERVICE, "CREATE", roles=(SERVER,), feature="messaging")
async def create(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """A message from profile `fromProfileId` to `toProfileIds`, stored and pushed like a
    client's SEND_MESSAGE (its sender keeps it in `sent`), within the S2S recipient limit."""
    sender = fields.string(data, "fromProfileId", max_length=fields.MAX_ID_LENGTH)
    to = _recipients(data, caller.app.limits.max_recipients_s2s) or []
    content = content_bytes(
        fields.required(data, "contentJson"), caller.app.limits.max_content_bytes
    )
    message = new_message({"id": sender, "name": sender}, to, content, now_ms())
    await deliver_message(node, caller.app_id, caller.app, message, to, sender)
    numbers = await node.engine.numbers.numbers(caller.app_id, [message.msg_id])
    return {"id": numbers.get(message.msg_id), "msgId": message.msg_id}


@operations.add(SERVICE, "GET", roles=(SERVER,), feature="messaging")
async def get(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    number = _number(data)
    message = await _message(node, caller, await _message_id(node, caller, number))
    return _numbered(number, message)


@operations.add(SERVICE, "LIST", roles=(SERVER,), feature="messaging")
async def list_page(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """Page `page` of `size` of the app's messages, in number (`id`), `msgCr` or `msgUp` order
    (`direction` 1 or -1), each with its number: `{"total", "items", "more"}`. The items are
    cut at RTT_NEXUDUS_REPLY_MAX_BYTES (at least one); `more` says some were left out."""
    page = fields.integer(data, "page", low=1, high=MAX_PAGE, default=1)
    size = fields.integer(data, "size", low=1, high=MAX_ROWS_PER_PAGE, default=25)
    order = data.get("orderBy", "id")
    if order not in ORDERS:
        raise RttError(400, Reason.BAD_CRITERIA, f"orderBy must be one of {', '.join(ORDERS)}")
    direction = fields.integer(data, "direction", low=-1, high=1, default=1)
    if direction == 0:
        raise RttError(400, Reason.BAD_CRITERIA, "direction must be 1 or -1")
    app, start = caller.app_id, (page - 1) * size
    budget = node.settings.nexudus_reply_max_bytes
    if order == "id":
        total, window = await node.engine.numbers.window(app, direction < 0, start, size)
        found, more = await node.engine.store.get_messages(app, [i for _, i in window], budget)
        by_id = {m.msg_id: m for m in found}
        items = [_numbered(n, by_id[i]) for n, i in window if i in by_id]
    else:
        query = Query("sys", (), ((order, direction),), size, page, start, size)
        total, rows = await node.engine.store.page(app, None, query, budget)
        messages = [m for m in rows if isinstance(m, Message)]  # the Sys view holds messages
        more = len(messages) < min(size, max(0, total - start))
        numbers = await node.engine.numbers.numbers(app, [m.msg_id for m in messages])
        items = [_numbered(numbers.get(m.msg_id), m) for m in messages]
    return {"total": total, "items": items, "more": more}


async def _check_unchanged(node: Node, caller: Caller, msg_id: str, data: dict[str, Any]) -> None:
    """A change may restate the message's sender and recipients, never alter them."""
    sender = fields.string(data, "fromProfileId", max_length=fields.MAX_ID_LENGTH, default=None)
    to = _recipients(data, caller.app.limits.max_recipients_s2s)
    if sender is None and to is None:
        return
    message = await _message(node, caller, msg_id)
    if sender is not None and sender != message.from_id:
        raise Unchangeable("fromProfileId")
    if to is not None and set(to) != set(message.to):
        raise Unchangeable("toProfileIds")


@operations.add(SERVICE, "UPDATE", roles=(SERVER,), feature="messaging")
async def update(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """Replace the content of message `id` through SYS_UPDATE_MESSAGE (its holders get
    `UPDATED`); `fromProfileId` / `toProfileIds`, if given, must be what it has."""
    number = _number(data)
    content = fields.required(data, "contentJson")
    msg_id = await _message_id(node, caller, number)
    await _check_unchanged(node, caller, msg_id, data)
    change = {"msgId": msg_id, "msgVer": -1, "contentJson": content}
    await dispatch(node, caller, "messaging", "SYS_UPDATE_MESSAGE", change)
    return {"id": number, "msgId": msg_id}


@operations.add(SERVICE, "DELETE", roles=(SERVER,), feature="messaging")
async def delete(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """Delete message `id` from every box through SYS_DELETE_MESSAGE (holders get `DELETED`)."""
    number = _number(data)
    msg_id = await _message_id(node, caller, number)
    await dispatch(node, caller, "messaging", "SYS_DELETE_MESSAGE", {"msgId": msg_id, "msgVer": -1})
    return {"id": number, "msgId": msg_id}
