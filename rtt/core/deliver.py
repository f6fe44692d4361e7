"""deliver(): the one path every pushed item takes. Persist, then ring the broker.

1. find who is offline (they get a push outbox entry, written in the same transaction);
2. store the item, its stream entries (a seq per recipient) and the push entries atomically;
3. publish one Fanout: the frame encoded once, plus (profile, seq) per recipient.
The caller is acknowledged only after step 2, so an acknowledged item survives a crash; the
broker is a doorbell, and any frame it loses is healed from the store by seq.

The per-recipient work around a send (who is offline, push entries, per-recipient parts) is
done in slices (rtt/slices.py) with the event loop served in between, so a 100 000-recipient
send does not hold up every other socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from rtt.core.node import Node
from rtt.domain.events import Event
from rtt.domain.messages import Message, fresh_inbox_entry
from rtt.domain.push import PushEntry, preview
from rtt.engines.base import Fanout
from rtt.protocol import (
    SLOT,
    Frame,
    data_fields,
    json_strings,
    loads,
    slotted_frame,
    spliced_frame,
    whole_frame,
)
from rtt.settings import AppConfig
from rtt.slices import sliced


async def _offline(node: Node, app_id: str, app: AppConfig, profiles: list[str]) -> list[str]:
    if not app.features.push:
        return []
    online = await node.engine.presence.online(app_id, profiles)
    return await sliced(profiles, lambda some: [p for p in some if p not in online])


async def deliver_message(
    node: Node, app_id: str, app: AppConfig, message: Message, inbox: list[str], sent_by: str | None
) -> None:
    """Store a message for `inbox` (and `sent_by`'s sent box), then push it to who is online."""
    offline = await _offline(node, app_id, app, inbox)
    pushes: list[PushEntry] = []
    if offline:  # the content is parsed again only when a notification needs its text
        title, body = message.sender.get("name") or "", preview(loads(message.content))
        data = orjson.dumps({"msgId": message.msg_id})
        msg_id, sent_at = message.msg_id, message.sent_at
        pushes = await sliced(
            offline,
            lambda some: [
                PushEntry(p, "message", msg_id, title, body, data, sent_at) for p in some
            ],
        )
    if message.from_id is None:  # each recipient's `to` is itself alone
        frame = slotted_frame("messaging", "INCOMING", fresh_inbox_entry(message, SLOT).item())
        mids = await sliced(inbox, lambda some: json_strings(list(some)))
    else:
        frame = whole_frame("messaging", "INCOMING", fresh_inbox_entry(message, "").item())
        mids = [b""] * len(inbox)
    started = time.perf_counter()
    seqs = await node.engine.store.append_message(
        app_id, message, inbox, sent_by, frame, mids, pushes
    )
    node.metrics.stored(started, app_id, inbox[0] if inbox else None, seqs)
    await node.engine.broker.publish(Fanout(app_id, frame, inbox, seqs, mids))


async def deliver_events(node: Node, app_id: str, app: AppConfig, events: list[Event]) -> None:
    """Store one event per recipient, then push each to its recipient if online."""
    first = events[0]
    offline = await _offline(node, app_id, app, [e.to_id for e in events])
    ev_id_of = {e.to_id: e.ev_id for e in events}
    kind, data, created_at = first.event_type, first.data, first.created_at
    pushes = await sliced(
        offline,
        lambda some: [PushEntry(p, "event", ev_id_of[p], kind, "", data, created_at) for p in some],
    )
    frame = spliced_frame(
        "event",
        "GET_EVENTS",
        {
            "eventType": first.event_type,
            "fromPlayerId": first.from_id,
            "createdAt": first.created_at,
            "eventData": orjson.Fragment(first.data),
        },
    )
    mids = await sliced(
        events, lambda some: [data_fields({"evId": e.ev_id, "toPlayerId": e.to_id}) for e in some]
    )
    started = time.perf_counter()
    seqs = await node.engine.store.append_events(app_id, events, frame, mids, pushes)
    node.metrics.stored(started, app_id, first.to_id, seqs)
    await node.engine.broker.publish(
        Fanout(
            app_id, frame, await sliced(events, lambda some: [e.to_id for e in some]), seqs, mids
        )
    )


async def publish_change(
    node: Node, app_id: str, frame: Frame, targets: list[tuple[str, int]]
) -> None:
    """Push an already stored UPDATED/DELETED item to the profiles that hold the message."""
    if targets:
        profiles, seqs = zip(*targets, strict=True)
        await node.engine.broker.publish(
            Fanout(app_id, frame, profiles, seqs, [b""] * len(targets))
        )


async def deliver_channel(
    node: Node,
    app_id: str,
    app: AppConfig,
    message: Message | None,
    inbox: list[str],
    frame: Frame,
    mids: list[bytes],
    push: Callable[[str], PushEntry] | None,
) -> None:
    """A system-channel send (API.md §8): the caller built its frame, each recipient's part of
    it (`mids`) and how an offline recipient's notification reads (None: no notification).

    With a `message` it is stored like any system message (inbox entries, a seq per recipient,
    replayed on resume). Without one (shouldPersist 0) only the push entries are written and
    the frame goes out live outside the stream (seq 0, like an RTT-only event): a resume never
    replays it, an offline recipient gets only its notification."""
    pushes: list[PushEntry] = []
    if push is not None:
        offline = await _offline(node, app_id, app, inbox)
        pushes = await sliced(offline, lambda some: [push(p) for p in some])
    if message is None:
        await node.engine.channel.queue_pushes(app_id, pushes)
        seqs = [0] * len(inbox)
    else:
        started = time.perf_counter()
        seqs = await node.engine.store.append_message(
            app_id, message, inbox, None, frame, mids, pushes
        )
        node.metrics.stored(started, app_id, inbox[0] if inbox else None, seqs)
    await node.engine.broker.publish(Fanout(app_id, frame, inbox, seqs, mids))
