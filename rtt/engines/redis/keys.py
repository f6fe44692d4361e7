"""Key names. A profile's keys share the hash tag `{p:<app>:<profile>}` and a message's keys
`{m:<app>:<msgId>}`, so each can be moved to one Redis Cluster slot when sends are split per slot.
"""

from __future__ import annotations

EPOCH = "rtt:epoch"
WRITES = "rtt:writes"
FANOUT_CHANNEL = "rtt:fanout"
NODES = "rtt:nodes"


def profile_prefix(app: str) -> str:
    """What every profile key of `app` starts with; the append scripts derive a recipient's
    keys from it as `prefix .. profile .. "}:seq"` (and `:stream`, `:box`, `:events`,
    `:evorder`)."""
    return f"{{p:{app}:"


def profile(app: str, profile_id: str) -> str:
    return f"{profile_prefix(app)}{profile_id}}}"


def seq(app: str, profile_id: str) -> str:
    return profile(app, profile_id) + ":seq"


def stream(app: str, profile_id: str) -> str:
    return profile(app, profile_id) + ":stream"


def box(app: str, profile_id: str) -> str:
    """Hash of `<msgbox>:<msgId>` → `[read, mbCr, mbUp, mbVer]`."""
    return profile(app, profile_id) + ":box"


def events(app: str, profile_id: str) -> str:
    return profile(app, profile_id) + ":events"


def event_order(app: str, profile_id: str) -> str:
    """Sorted set of the profile's event ids scored by createdAt (ties in evId order): events
    are read oldest first a reply at a time, without reading the ones not returned."""
    return profile(app, profile_id) + ":evorder"


def message(app: str, msg_id: str) -> str:
    return f"{{m:{app}:{msg_id}}}"


def holders(app: str, msg_id: str) -> str:
    """Set of `<msgbox>|<profileId>` that hold the message."""
    return message(app, msg_id) + ":holders"


def message_index(app: str) -> str:
    return f"rtt:{app}:messages"


def frame(app: str, frame_id: str) -> str:
    return f"rtt:{app}:frame:{frame_id}"


PUSH_GROUP = "rtt-push"  # the consumer group the Lua scripts create with each outbox stream


def outbox(app: str) -> str:
    """Stream of push entries, created with consumer group PUSH_GROUP for the dispatchers."""
    return f"rtt:{app}:push"


def idempotency(app: str, key: str) -> str:
    return f"rtt:{app}:idem:{key}"


def s2s_session(session_id: str) -> str:
    return f"rtt:s2s:{session_id}"


def node_alive(node_id: str) -> str:
    return f"rtt:node:{node_id}"


def node_profiles(node_id: str) -> str:
    """Set of `<app>\0<profileId>` with a live session on that node."""
    return f"rtt:node:{node_id}:profiles"
