"""Event operations (API.md §2, §4.7): system events, RTT-only events, a profile's events."""

from __future__ import annotations

from typing import Any

from rtt.core.deliver import deliver_events
from rtt.core.node import Node, now_ms
from rtt.core.recipients import split_recipients
from rtt.core.registry import CLIENT, SERVER, Caller, Operations
from rtt.domain import fields
from rtt.domain.events import Event
from rtt.domain.identities import is_system_identity
from rtt.domain.messages import content_bytes, new_id, new_ids
from rtt.domain.paging import cut_short, decode_after, encode_after
from rtt.engines.base import Fanout
from rtt.errors import invalid
from rtt.protocol import Frame, dumps
from rtt.slices import sliced

operations = Operations()  # this module's operations; app.py builds the registry from them

MAX_EVENT_TYPE = 128


def _event_parts(caller: Caller, data: dict[str, Any]) -> tuple[str, bytes]:
    event_type = fields.string(data, "eventType", max_length=MAX_EVENT_TYPE)
    event_data = data.get("eventData")
    if event_data is None:
        event_data = {}
    return str(event_type), content_bytes(
        event_data, caller.app.limits.max_content_bytes, "eventData"
    )


def _sender(caller: Caller, sender: object) -> str | None:
    """The event's fromPlayerId. null and "System" both mean the app itself (the seed accepts
    either): clients always see it spelled null, as a system message's `from.id` is, and so
    does any other system identity of the app."""
    if sender is None:
        return None
    if not fields.is_profile_id(sender):
        raise invalid('fromProfileId must be a profileId, null or "System"')
    if sender == "System" or is_system_identity(str(sender), caller.app.system_identities):
        return None
    return str(sender)


@operations.add("event", "SYS_SEND_EVENT_TO_PROFILES", roles=(SERVER,), feature="events")
async def sys_send_event_to_profiles(
    node: Node, caller: Caller, data: dict[str, Any]
) -> dict[str, Any]:
    raw = fields.raw_list(
        data, "toIds", max_count=caller.app.limits.max_recipients_s2s, recipients=True
    )
    event_type, payload = _event_parts(caller, data)
    sender = _sender(caller, data.get("fromProfileId"))
    valid, errors = await split_recipients(raw)
    if valid:
        now = now_ms()
        pairs = list(zip(new_ids(len(valid)), valid, strict=True))
        events = await sliced(
            pairs, lambda some: [Event(i, event_type, sender, p, now, payload) for i, p in some]
        )
        await deliver_events(node, caller.app_id, caller.app, events)
    return {"sentCount": len(valid), "errorCount": len(errors), "errorProfiles": errors}


@operations.add("event", "SYS_SEND_RTT_ONLY", roles=(SERVER,), feature="rtt")
async def sys_send_rtt_only(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """Live only: no seq, no storage, no push entry; a client that is offline never sees it."""
    to = fields.string(data, "toId", max_length=fields.MAX_ID_LENGTH)
    event_type, payload = _event_parts(caller, data)
    ev_id = new_id()
    event = Event(ev_id, event_type, None, to, now_ms(), payload).item()
    body = dumps({"service": "event", "operation": "GET_EVENTS", "data": event})
    await node.engine.broker.publish(Fanout(caller.app_id, Frame(body[1:]), [to], [0], [b""]))
    return {"evId": ev_id}


@operations.add("event", "GET_EVENTS", roles=(CLIENT,), feature="events", reads_many=True)
async def get_events(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """The profile's events oldest first, cut at reply_max_bytes: a reply cut short says
    `moreAfter: true` and carries the `context` that continues right after its last event."""
    opaque = data.get("context")
    after = None
    if opaque is not None:
        created_at, ev_id = decode_after("events", opaque, (int, str))
        after = (created_at, ev_id)
    events, more = await node.engine.store.get_events(
        caller.app_id, caller.client_profile(), after, node.settings.reply_max_bytes
    )
    reply = {"incoming_events": [e.item() for e in events]}
    last = events[-1] if events else None
    context = encode_after("events", [last.created_at, last.ev_id]) if last else None
    return cut_short(reply, more, context)


@operations.add("event", "DELETE_INCOMING", roles=(CLIENT,), feature="events")
async def delete_incoming(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    ev_id = fields.string(data, "evId", max_length=fields.MAX_ID_LENGTH)
    deleted = await node.engine.store.delete_events(caller.app_id, caller.client_profile(), [ev_id])
    return {"requested": 1, "actual": deleted}


@operations.add("event", "DELETE_INCOMING_EVENTS", roles=(CLIENT,), feature="events")
async def delete_incoming_events(
    node: Node, caller: Caller, data: dict[str, Any]
) -> dict[str, Any]:
    ids = fields.id_list(data, "evIds", max_count=1000)
    deleted = await node.engine.store.delete_events(caller.app_id, caller.client_profile(), ids)
    return {"requested": len(ids), "actual": deleted}
