"""brainCloud's piggybacked events: a `/dispatcherv2` response may carry `"events":[…]` beside its
`responses`, which the client library hands to the app's event callback
(`registerEventCallback`). An app turns it on with `[apps.X.features] piggyback_events = true`
(its `events` feature must be on too); it is off by default, as the library also polls with
`event/GET_EVENTS` and takes live events over RTT.

Each response of a session carries the profile's stored events that session was not handed
yet, in the order they were stored, at most RTT_PIGGYBACK_MAX_EVENTS and
RTT_PIGGYBACK_MAX_BYTES (at least one); the rest follow on the next packets. The engine keeps
each session's cursor (EventPiggyback), so this holds across nodes and never repeats an event
to a session. Events stay in the mailbox until the client deletes them, as brainCloud keeps
them; a new session starts from the oldest one kept."""

from __future__ import annotations

import logging
from typing import Any

from rtt.core.node import Node
from rtt.core.registry import Caller
from rtt.engines.base import EngineUnavailable

log = logging.getLogger("rtt.piggyback")


async def piggybacked_events(node: Node, caller: Caller | None) -> list[dict[str, Any]]:
    """The event items to send along with this client session's response (empty when the
    app does not piggyback). An engine that fails here costs the response its events only:
    its operations already ran, and the events follow on a later packet."""
    if caller is None or caller.session is None or caller.profile is None:
        return []
    features = caller.app.features
    if not (features.piggyback_events and features.events):
        return []
    settings = node.settings
    try:
        events = await node.engine.piggyback.take(
            caller.app_id,
            caller.profile,
            caller.session,
            settings.piggyback_max_events,
            settings.piggyback_max_bytes,
            settings.client_session_seconds,
        )
    except EngineUnavailable as e:
        log.warning("piggybacked events left for a later packet: %s", e)
        return []
    return [event.item() for event in events]
