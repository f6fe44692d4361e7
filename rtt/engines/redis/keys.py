"""Key names. A profile's keys share the hash tag `{p:<app>:<profile>}`, a message's keys
`{m:<app>:<msgId>}`, an app's shared keys `{<app>}` and the keys of every app `{rtt}`: on Redis
Cluster each group is one slot, and a write is split in parts of one slot each (lua/parts.lua).

Every name is injective in its parts: an app id is written length-prefixed (`<len>:<app>`), so
app `a` + profile `b:c` and app `a:b` + profile `c` never share a key; what follows the app is
either one free-form part ended by a fixed suffix (a suffix never holds `}`, so the last `}:`
splits a profile from its suffix) or a part that ends the name. Lengths count characters.
"""

from __future__ import annotations

from collections.abc import Iterable

# The keys every send touches, across apps, share the hash tag `{rtt}`: on Redis Cluster they
# are one slot, written by one part of a send (lua/parts.lua).
EPOCH = "{rtt}:epoch"
WRITES = "{rtt}:writes"
OUTBOXES = "{rtt}:outboxes"  # set of every outbox stream's key: what the sweep trims
EVENT_APPS = "{rtt}:event_apps"  # set of the app ids that have stored events
LAYOUT = "{rtt}:layout"  # the key layout the store is written in (LAYOUT_VERSION; migrate.py)
LAYOUT_VERSION = b"2"
FANOUT_CHANNEL = "rtt:fanout"
NODES = "rtt:nodes"
PUSH_DROPPED = "rtt:push_dropped"  # hash: outbox key → entries retention dropped


def _app(app: str) -> str:
    """The app id, length-prefixed so the parts after it cannot shift into it."""
    return f"{len(app)}:{app}"


def _shared(app: str) -> str:
    """The prefix of an app's shared keys (indexes, outbox, accounts, channel state…): the hash
    tag `{<len>:<app>}`, so on Redis Cluster what one script or MULTI touches of them is one
    slot. Frames are the exception: written alone, they spread over the cluster."""
    return f"rtt:{{{_app(app)}}}"


def profile(app: str, profile_id: str) -> str:
    return f"{{p:{_app(app)}:{profile_id}}}"


STREAM, BOX, EVENTS, EVENT_ORDER = ":stream", ":box", ":events", ":evorder"
SEQ_FIELD = "#seq"  # the box hash's field holding the profile's last seq (lua/_stream.lua)


def profile_keys(app: str, profile_ids: Iterable[str], *suffixes: str) -> list[str]:
    """The keys `profile(app, p) + suffix` for every profile and suffix, profile by profile:
    the same names as `box`, `stream`… built in one pass, as a send to 100 000 recipients
    needs."""
    head = f"{{p:{_app(app)}:"
    return [f"{head}{p}}}{suffix}" for p in profile_ids for suffix in suffixes]


def stream(app: str, profile_id: str) -> str:
    return profile(app, profile_id) + STREAM


def box(app: str, profile_id: str) -> str:
    """Hash of `<msgbox>:<msgId>` → `[read, mbCr, mbUp, mbVer]`, and SEQ_FIELD → the profile's
    last seq (no box field is a msgbox without a `:`): a send's one HSET per recipient writes
    both its inbox entry and its seq."""
    return profile(app, profile_id) + BOX


def events(app: str, profile_id: str) -> str:
    return profile(app, profile_id) + EVENTS


def event_order(app: str, profile_id: str) -> str:
    """Sorted set of the profile's event ids scored by createdAt (ties in evId order): events
    are read oldest first a reply at a time, without reading the ones not returned."""
    return profile(app, profile_id) + EVENT_ORDER


def event_ages(app: str) -> str:
    """Sorted set of the app's events (`event_member`) by createdAt: what the sweep expires."""
    return f"{_shared(app)}:evages"


def event_member(profile_id: str, ev_id: str) -> str:
    """One event of `event_ages`: the length prefix splits profile from evId."""
    return f"{len(profile_id)}:{profile_id}{ev_id}"


def split_event_member(member: str) -> tuple[str, str]:
    """`event_member`'s (profile, evId)."""
    size, _, rest = member.partition(":")
    return rest[: int(size)], rest[int(size) :]


def message(app: str, msg_id: str) -> str:
    return f"{{m:{_app(app)}:{msg_id}}}"


def holders(app: str, msg_id: str) -> str:
    """Set of `<msgbox>|<profileId>` that hold the message."""
    return message(app, msg_id) + ":holders"


def message_index(app: str) -> str:
    """Sorted set of the app's message ids scored by msgCr (ties in msgId order)."""
    return f"{_shared(app)}:messages"


ORDERS = (("msgCr", 1), ("msgCr", -1), ("msgUp", 1), ("msgUp", -1))
"""The orders the Sys view reads through an index: each a sorted set of the app's message ids,
scored by the field (negated for -1), so its ascending order, ties in msgId order, is exactly
the query's order (sort_key, then msgId)."""


def message_order(app: str, field: str, direction: int) -> str:
    """The index of one of ORDERS (msgCr ascending is `message_index`)."""
    if (field, direction) == ("msgCr", 1):
        return message_index(app)
    return f"{_shared(app)}:messages:{field}:{'desc' if direction < 0 else 'asc'}"


def message_orders(app: str) -> list[str]:
    """Every index of ORDERS, in that order: the keys the send, update, delete scripts keep."""
    return [message_order(app, field, direction) for field, direction in ORDERS]


def frame(app: str, frame_id: str) -> str:
    return f"rtt:{_app(app)}:frame:{frame_id}"  # no tag: see _shared


PUSH_GROUP = "rtt-push"  # the consumer group the Lua scripts create with each outbox stream


def outbox(app: str) -> str:
    """Stream of push entries, created with consumer group PUSH_GROUP for the dispatchers."""
    return f"{_shared(app)}:push"


def idempotency(app: str, key: str) -> str:
    return f"{_shared(app)}:idem:{key}"


def s2s_session(session_id: str) -> str:
    return f"rtt:s2s:{session_id}"


def node_alive(node_id: str) -> str:
    return f"rtt:node:{node_id}"


def node_profiles(node_id: str) -> str:
    """Set of `<len>:<app><profileId>` (`presence_member`) with a live session on that node."""
    return f"rtt:node:{node_id}:profiles"


def presence_member(app: str, profile_id: str) -> str:
    """One (app, profile) as a member of `node_profiles`: the length prefix splits it."""
    return f"{_app(app)}{profile_id}"


def channel_nonces(app: str) -> str:
    """Sorted set of the app's live system-channel request nonces, scored by expiry (ms)."""
    return f"{_shared(app)}:rc:nonces"


def channel_rate(app: str) -> str:
    """Hash `tokens`, `stamp` (ms): the app's system-channel token bucket."""
    return f"{_shared(app)}:rc:rate"


def channel_senders(app: str) -> str:
    """Set of the app's system-channel senders (`fromUserId`s): its recorded system identities."""
    return f"{_shared(app)}:rc:senders"


def message_counter(app: str) -> str:
    """The app's last message number (INCR in append_message.lua): never goes back."""
    return f"{_shared(app)}:number"


def message_numbers(app: str) -> str:
    """Sorted set of the app's message ids scored by their number (a Nexudus `Id`): the number
    of a message, the message of a number, and the app's messages in number order."""
    return f"{_shared(app)}:numbers"


# --- brainCloud client accounts (engines/redis/accounts.py) ----------------------------------


def identity(app: str, kind: str, external_id: str) -> str:
    """Hash {profile, secret} of one sign-in identity; `kind` is a fixed word (Anonymous, …)."""
    return f"{_shared(app)}:identity:{kind}:{external_id}"


def account(app: str, profile_id: str) -> str:
    """Hash {name, created} of one profile created through the client API."""
    return f"{_shared(app)}:account:{profile_id}"


def account_count(app: str) -> str:
    return f"{_shared(app)}:accounts"


def client_session(session_id: str) -> str:
    return f"rtt:csession:{session_id}"


def rtt_secret(secret: str) -> str:
    return f"rtt:rttsecret:{secret}"


# --- piggybacked events (engines/redis/piggyback.py) ------------------------------------------

EVENT_SEQS = ":evseq"


def event_seqs(app: str, profile_id: str) -> str:
    """Sorted set of the profile's event ids scored by their stream seq: the order the events
    were committed in, which piggybacked events follow (append_events.lua adds, deletes remove)."""
    return profile(app, profile_id) + EVENT_SEQS


def piggyback_cursor(app: str, profile_id: str, session_id: str) -> str:
    """The last event seq handed to one client session, expiring with the session's idle time.
    In the profile's hash tag, beside the events it points into; a session id never holds `}`,
    so the last `}:` still ends the profile."""
    return f"{profile(app, profile_id)}:pb:{session_id}"


PUSH_PARKED = "rtt-parked"  # the consumer that holds outbox entries waiting for their retry


def push_tries(app: str) -> str:
    """Hash: outbox entry id → `<attempts>:<due ms>` of an entry that failed or was deferred."""
    return f"{_shared(app)}:push:tries"


def push_dead(app: str) -> str:
    """Stream of the app's dead letters (field `item`: the JSON of push/GET_DEAD_LETTERS)."""
    return f"{_shared(app)}:push:dead"


def push_delivered(app: str, key: str) -> str:
    """A delivered (item, destination) dedupe key (domain/notification.py), with a TTL."""
    return f"{_shared(app)}:push:sent:{key}"


def push_gate(app: str, profile_id: str) -> str:
    """Present while the profile may not be notified again (its TTL is the wait)."""
    return f"{_shared(app)}:push:gate:{profile_id}"


def push_devices(app: str, profile_id: str) -> str:
    """Hash: `<platform>:<token>` → registered at (ms): the profile's devices."""
    return f"{_shared(app)}:push:devices:{profile_id}"
