"""The engine roles as Protocols. Each docstring states the guarantee the core relies on.

The core only ever talks to these; `local` (SQLite + in-process) and `redis` implement them,
and one contract test suite runs against both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from rtt.domain.events import Event
from rtt.domain.messages import BoxEntry, Message
from rtt.domain.paging import Query
from rtt.domain.push import PushEntry
from rtt.protocol import Frame


@dataclass(frozen=True, slots=True)
class Retention:
    """How long events and push entries are kept; the engines' sweep applies it. Past a bound
    the oldest go first, and the push entries dropped are counted (`PushOutbox.dropped`)."""

    event_max_seconds: float = 30 * 24 * 3600.0
    outbox_max_entries: int = 100_000  # per app
    outbox_max_seconds: float = 7 * 24 * 3600.0


DEFAULT_RETENTION = Retention()


class VersionMismatch(Exception):
    """The message changed since the caller read its version (40598)."""


class MessageNotFound(Exception):
    """The message does not exist (any more)."""


class EngineUnavailable(Exception):
    """The engine could not be reached in time; nothing was half-written, so retrying is safe."""


@dataclass(slots=True)
class Fanout:
    """One send as the broker carries it: the frame once, plus each target's profile, seq and
    part (`Frame.render`), column by column: a 100 000-target send builds no tuple per target,
    and the redis broker encodes and decodes each column in one C call."""

    app: str
    frame: Frame
    profiles: Sequence[str]
    seqs: Sequence[int]
    parts: Sequence[bytes]


class ClaimState(StrEnum):
    """What claiming a request key found (Store.claim)."""

    OWNED = "owned"  # the caller holds the key: run the request, then settle it
    PENDING = "pending"  # another attempt holds it and is still running: wait, ask again
    DONE = "done"  # the first attempt's response is recorded: answer it, run nothing
    CONFLICT = "conflict"  # the key is held for a request with another fingerprint


@dataclass(slots=True)
class S2SSession:
    """A brainCloud S2S session. Its packets' answers are kept by their claims
    (Store.claim), so the session itself only remembers which packet came last."""

    session_id: str
    app: str
    server: str
    expires_at: float
    last_packet: int | None = None


class Store(Protocol):
    """Durable state. Every method that returns seqs has, when it returns, committed the
    change, the stream items (one per target, seq gap-free per profile) and any push entries
    in one atomic transaction: all of it or none of it survives a crash."""

    epoch: str
    """Changes whenever stored streams may have lost items, so clients know to RESYNC."""

    async def start(self) -> None: ...
    async def check_epoch(self) -> bool:
        """Re-read the epoch; True if it changed (stored streams lost items: RESYNC everyone)."""

    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def sweep(self) -> None:
        """Drop stream items, caches, events and push entries past their retention
        (`Retention`); safe to call at any time."""

    async def append_message(
        self,
        app: str,
        message: Message,
        inbox: list[str],
        sent_by: str | None,
        frame: Frame,
        mids: list[bytes],
        pushes: list[PushEntry],
    ) -> list[int]:
        """Store the message, an inbox entry per recipient (and a sent entry for a profile
        sender), a stream item per recipient (frame + its `mids` entry); return each
        recipient's new seq, aligned with `inbox`."""

    async def append_events(
        self,
        app: str,
        events: list[Event],
        frame: Frame,
        mids: list[bytes],
        pushes: list[PushEntry],
    ) -> list[int]:
        """Store one event per recipient; return each recipient's new seq, aligned."""

    async def update_message(
        self, app: str, msg_id: str, expected_ver: int, content: bytes, now: int, frame: Frame
    ) -> list[tuple[str, int]]:
        """Compare-and-set the shared content (VersionMismatch, MessageNotFound); a stream
        item for every profile holding it, returned as (profile, seq)."""

    async def delete_message(
        self, app: str, msg_id: str, expected_ver: int, frame: Frame
    ) -> list[tuple[str, int]]:
        """Remove the message from every box, compare-and-set on its version."""

    async def get_messages(
        self, app: str, msg_ids: list[str], max_bytes: int
    ) -> tuple[list[Message], bool]:
        """The messages that exist, in request order, cut at `max_bytes` of items (at least
        one); True if some that exist were left out. Reads no content it does not return."""

    async def get_entries(
        self,
        app: str,
        profile: str,
        box: str,
        msg_ids: list[str],
        mark_read_at: int | None,
        max_bytes: int,
    ) -> tuple[list[BoxEntry], list[str]]:
        """The caller's entries, in request order, cut at `max_bytes` of items (at least one),
        and the ids it does not hold. Every held entry is marked read first if `mark_read_at`."""

    async def mark_read(
        self, app: str, profile: str, box: str, msg_ids: list[str], now: int
    ) -> int:
        """Returns how many of the ids exist in that box (already read ones count)."""

    async def delete_entries(self, app: str, profile: str, box: str, msg_ids: list[str]) -> int: ...
    async def page(
        self, app: str, profile: str | None, query: Query, max_bytes: int
    ) -> tuple[int, list[BoxEntry] | list[Message]]:
        """(total matching, the query's window cut at `max_bytes` of items as `query.pick`
        says): box entries of `profile`, or messages if None. Only the metadata of the window
        and the content of what is returned are read, never one long read of the whole box."""

    async def counts(self, app: str, profile: str) -> dict[str, dict[str, int]]: ...
    async def get_events(
        self, app: str, profile: str, after: tuple[int, str] | None, max_bytes: int
    ) -> tuple[list[Event], bool]:
        """The profile's events oldest first (createdAt, then evId), after that key if given,
        cut at `max_bytes` (at least one); True if more follow."""

    async def delete_events(self, app: str, profile: str, ev_ids: list[str]) -> int: ...

    async def stream_since(
        self, app: str, profile: str, after: int, limit: int, max_bytes: int | None = None
    ) -> list[tuple[int, bytes]] | None:
        """Frames with seq > after, in order, at most `limit` and, given `max_bytes`, no more
        than fit in it (at least one: only those are read); None if some were already dropped
        (the caller must RESYNC)."""

    async def latest_seq(self, app: str, profile: str) -> int: ...

    async def claim(
        self, app: str, key: str, fingerprint: bytes, token: str, ttl: float
    ) -> tuple[ClaimState, bytes | None]:
        """One atomic step, shared by every node: no live record for (app, key) → record it
        as pending, held by `token` for `ttl` seconds (OWNED); held by `token` already → its
        lifetime starts again (OWNED: this is how a long run keeps its claim); recorded with
        another `fingerprint` → CONFLICT; settled → (DONE, the recorded response); else
        PENDING. A holder that dies stops renewing, so its claim frees itself after `ttl`."""

    async def settle(
        self, app: str, key: str, token: str, response: bytes | None, ttl: float
    ) -> None:
        """If `token` still holds the key: record `response` as its answer for `ttl` seconds,
        or, given None, drop the claim so that a retry runs. Otherwise do nothing."""

    async def get_s2s_session(self, session_id: str) -> S2SSession | None: ...
    async def save_s2s_session(self, session: S2SSession) -> None: ...


class PushOutbox(Protocol):
    """Durable notifications for offline recipients, written atomically with their item."""

    async def pending(
        self, app: str, profile: str | None, limit: int, after: str | None, max_bytes: int
    ) -> tuple[list[PushEntry], bool]:
        """Oldest first, after the entry with pushId `after` if given: at most `limit`, cut at
        `max_bytes` (at least one); True if more follow."""

    async def dropped(self, app: str) -> int:
        """How many of the app's entries retention has dropped undelivered, ever."""

    async def depth(self, app: str) -> int:
        """How many of the app's entries are in the outbox now (at most its retention)."""


class Broker(Protocol):
    """A doorbell between nodes: at-most-once, so receivers heal gaps from the Store."""

    async def start(self, handler: Callable[[Fanout], None], on_gap: Callable[[], None]) -> None:
        """Deliver every fanout to `handler`; call `on_gap` after any moment in which fanouts
        may have been lost (a reconnect), once the subscription is live again."""

    async def publish(self, fanout: Fanout) -> None: ...
    def healthy(self) -> bool:
        """False while the subscription is known or suspected to be deaf."""

    async def close(self) -> None: ...


class Presence(Protocol):
    """Who is online, across nodes. Entries of a node that stops refreshing them expire."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def join(self, app: str, profile: str) -> None: ...
    async def leave(self, app: str, profile: str) -> None: ...
    async def leave_all(self) -> None:
        """Every session of this node is ending (shutdown): its entries go in one step, and a
        later `leave` of any of them is a no-op."""

    async def online(self, app: str, profiles: list[str]) -> set[str]: ...


@dataclass
class Engine:
    """The roles of one node, started and closed together."""

    store: Store
    outbox: PushOutbox
    broker: Broker
    presence: Presence
    channel: SystemChannel
    numbers: MessageNumbers

    accounts: Accounts
    piggyback: EventPiggyback

    push: PushState

    async def start(self, handler: Callable[[Fanout], None], on_gap: Callable[[], None]) -> None:
        await self.store.start()
        await self.presence.start()
        await self.broker.start(handler, on_gap)

    async def ready(self) -> None:
        """Raise unless the store answers and the broker is not deaf."""
        await self.store.ping()
        if not self.broker.healthy():
            raise EngineUnavailable("broker subscription is not live")

    async def close(self) -> None:
        await self.broker.close()
        await self.presence.close()
        await self.channel.close()
        await self.push.close()
        await self.store.close()


class NonceClaim(StrEnum):
    """What claiming a signed request's nonce found (SystemChannel.claim_nonce)."""

    FRESH = "fresh"  # first use: recorded until it expires
    REPLAYED = "replayed"  # seen before and not yet expired: refuse the request
    FULL = "full"  # the app already holds its maximum of live nonces: refuse the request


class SystemChannel(Protocol):
    """What the system-channel front door (RongCloud) shares across nodes: each step is one
    atomic engine operation (a Lua script on redis; one SQLite transaction, or the one
    process, on local), so two nodes asked at once still see a single answer."""

    async def claim_nonce(self, app: str, nonce: str, ttl: float, max_live: int) -> NonceClaim:
        """Record `nonce` for `ttl` seconds unless it is live already (REPLAYED) or the app
        holds `max_live` live nonces (FULL). Expired nonces are forgotten in the same step."""

    async def take_rate(self, app: str, count: int, rate: int) -> bool:
        """A token bucket of `rate` per second (a burst up to `rate`), shared by every node:
        take `count` tokens if at least min(count, rate) are there (a send larger than one
        second's worth passes when the bucket is full and leaves it in debt); else take none
        and answer False."""

    async def add_sender(self, app: str, sender: str, max_senders: int) -> bool:
        """Record `sender` as a system identity of the app; False (nothing recorded) if it is
        new and the app already has `max_senders`. Recorded senders are kept."""

    async def senders_among(self, app: str, profiles: list[str]) -> set[str]:
        """Which of `profiles` are recorded senders of the app."""

    async def queue_pushes(self, app: str, pushes: list[PushEntry]) -> None:
        """Write push outbox entries for an item that is not stored (shouldPersist 0), in one
        atomic step, under the outbox's retention like every other entry."""

    async def close(self) -> None: ...


class MessageNumbers(Protocol):
    """Every stored message's integer number (a Nexudus `Id`, API.md §9), whichever door sent
    it: given in the same transaction that stores the message, unique in the app across every
    node, never reused, growing in send order. A deleted message loses its number."""

    async def numbers(self, app: str, msg_ids: list[str]) -> dict[str, int]:
        """msg_id → number of those of the messages that exist."""

    async def message_id(self, app: str, number: int) -> str | None:
        """The msgId of the message with this number, None if there is none (any more)."""

    async def window(
        self, app: str, descending: bool, start: int, limit: int
    ) -> tuple[int, list[tuple[int, str]]]:
        """(how many messages the app holds, up to `limit` (number, msgId) from index `start`
        in number order); reads the numbers only, never a message."""


# --- brainCloud client accounts and sessions (/dispatcherv2) ---------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    """A profile as one of its identities sees it: the profile, its name, and the identity's
    secret (a password hash for Universal, None for Anonymous)."""

    profile: str
    name: str
    created_at: int  # ms
    secret: bytes | None = None


@dataclass(frozen=True, slots=True)
class ClientSession:
    """A signed-in client of the brainCloud client API: who it is, until when."""

    session_id: str
    app: str
    profile: str
    name: str
    expires_at: float  # epoch seconds


class AccountLimit(Exception):
    """The app holds as many profiles as RTT_ACCOUNTS_MAX_PER_APP allows."""


class Accounts(Protocol):
    """Profiles, their identities, client sessions and RTT connection secrets, shared by every
    node. An identity (app, kind, external id) names one profile, on every node: creating it is
    one atomic step, so two nodes creating the same identity at once end with one profile.
    Sessions and secrets expire on their own; profiles stay."""

    async def find(self, app: str, kind: str, external_id: str) -> Account | None: ...

    async def create(
        self, app: str, kind: str, external_id: str, account: Account, max_accounts: int
    ) -> tuple[Account, bool]:
        """Create `account` under the identity unless the identity exists: (the identity's
        account, True if created). AccountLimit if the app already has `max_accounts`."""

    async def open_session(self, session: ClientSession) -> None:
        """Store a new session until its `expires_at`."""

    async def touch_session(self, session_id: str, ttl: float) -> ClientSession | None:
        """The live session, its expiry pushed to now + `ttl` in the same step; None if it is
        unknown or expired."""

    async def issue_rtt_secret(self, secret: str, session: ClientSession, ttl: float) -> None:
        """Bind a socket secret to `session` for `ttl` seconds."""

    async def take_rtt_secret(self, secret: str) -> ClientSession | None:
        """The session the secret was issued for, and the secret is gone (single use); None if
        unknown, used or expired."""


# --- piggybacked events (/dispatcherv2 `events`) -----------------------------------------------


class EventPiggyback(Protocol):
    """Which of a profile's stored events each client session has been handed in a response.

    A stored event keeps its recipient's stream seq (the order events were committed, not
    their clock), and a session's cursor is the last seq handed to it. Taking is one atomic
    step shared by every node: read the events after the cursor and move the cursor past
    them, so two packets of one session, on any nodes, never take the same event. Deleted and
    expired events are never taken; a cursor lives as long as its session is used."""

    async def take(
        self, app: str, profile: str, session_id: str, max_count: int, max_bytes: int, ttl: float
    ) -> list[Event]:
        """The profile's events after the session's cursor, in seq order, at most `max_count`
        and `max_bytes` (each event counts its JSON size plus ITEM_OVERHEAD; at least one
        event); the cursor moves past them and lives at least `ttl` seconds more (the session's
        idle lifetime; an engine may keep it up to twice that)."""


@dataclass(frozen=True, slots=True)
class Device:
    """A profile's registered device (API.md §11)."""

    platform: str  # "fcm" | "apns"
    token: str
    registered_at: int  # ms


@dataclass(frozen=True, slots=True)
class Claimed:
    """An outbox entry a dispatcher holds under a lease."""

    app: str
    entry: PushEntry


class PushState(Protocol):
    """What push dispatchers share through the engine: leases on outbox entries, retry
    schedules, dead letters, delivered (item, destination) keys, per-profile rate gates and
    devices. Each step is one atomic engine operation (one SQLite transaction; one Lua script,
    MULTI or single command on Redis), so dispatchers on many nodes never hold one entry at
    once while its lease runs, and a dispatcher that dies (SIGKILL) only delays its entries
    by the lease: they are claimed again. Delivery is therefore at least once."""

    async def claim(self, apps: list[str], worker: str, limit: int, lease: float) -> list[Claimed]:
        """Up to `limit` entries of `apps`, oldest first, that nobody holds and that are not
        waiting for a retry (a lapsed lease counts as not held), each held by `worker` for
        `lease` seconds."""

    async def renew(self, held: list[Claimed], worker: str, lease: float) -> None:
        """Hold these entries `lease` seconds longer (a long run keeps its claim)."""

    async def done(self, app: str, push_ids: list[str]) -> None:
        """The entries are settled (delivered, or nothing to deliver): remove them."""

    async def retry(
        self, app: str, entries: list[PushEntry], delay: float, attempt: bool, lease: float
    ) -> None:
        """Release the entries until `delay` seconds from now; `attempt` counts a failed try
        (`PushEntry.attempts` + 1), else they were only deferred (the per-profile rate)."""

    async def dead(self, app: str, entries: list[PushEntry], error: str, keep: int) -> None:
        """Move the entries to the app's dead letters (the newest `keep` are kept)."""

    async def dead_letters(self, app: str, limit: int) -> list[dict[str, object]]:
        """The app's dead letters, oldest first."""

    async def depth(self, app: str) -> int:
        """Outbox entries of the app not yet settled (held, waiting or new)."""

    async def delivered(self, app: str, keys: list[str]) -> set[str]:
        """Which of these dedupe keys are recorded."""

    async def record_delivered(self, app: str, keys: list[str], ttl: float) -> None:
        """Record dedupe keys for `ttl` seconds."""

    async def gate(self, app: str, profiles: list[str], interval: float) -> dict[str, float]:
        """Per-profile rate: for each profile, 0.0 if it may be notified now (and then not
        again for `interval` seconds), else the seconds until it may."""

    async def add_device(self, app: str, profile: str, device: Device, max_devices: int) -> None:
        """Register (or refresh) a device; past `max_devices` the oldest is dropped."""

    async def remove_device(self, app: str, profile: str, platform: str, token: str) -> None: ...
    async def remove_devices(self, app: str, profile: str) -> None: ...
    async def devices(self, app: str, profiles: list[str]) -> dict[str, list[Device]]:
        """Each profile's devices (profiles with none are left out), oldest first."""

    async def sweep(self) -> None:
        """Forget expired dedupe keys and gates."""

    async def close(self) -> None: ...
