"""What a node counts, for `/metrics` (Prometheus text) and the admin page: every metric object
of a node, in one registry of its own.

Each node has its own `Metrics` (not prometheus-client's global registry), so several nodes in
one process (the tests) never count into each other. It is a low layer: anything may import it.

Cheap enough to leave on: the hot paths (hub fan-out, session push, socket write) never look a
label up per frame. Labelled children are bound once, here; the hub counts the frames of a
fan-out slice in a local integer and adds them once per slice; a send adds once per send.
With `RTT_METRICS=false` every metric is a no-op object and `/metrics` answers 404.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from rtt.errors import CloseCode

T = TypeVar("T")

# the classic text format every Prometheus reads (rtt's names need none of 1.0.0's escaping)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# close codes a peer may send besides ours; any other code it sends is counted as "other",
# so a client cannot grow the label set
PEER_CLOSE_CODES = (1001, 1005, 1006)
# sends whose send→push time is being measured, waiting for their fan-out to reach the hub;
# a fan-out the broker lost never arrives, so the oldest are forgotten past this
MAX_TIMED_SENDS = 4096
DIALECTS = ("s2s", "client", "rongcloud", "nexudus", "admin")


class Count(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class Level(Count, Protocol):
    def dec(self, amount: float = 1) -> None: ...
    def set(self, value: float) -> None: ...


class Timing(Protocol):
    def observe(self, amount: float) -> None: ...


class _Off:
    """Every metric of a node with metrics turned off: it does nothing."""

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


OFF = _Off()


class Snapshot(Generic[T]):
    """A value read from the engine when asked (a scrape, an admin poll, `/status`), kept `ttl`
    seconds: askers in quick succession (or many at once) cost the engine one read."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._value: T | None = None
        self._at = -float("inf")
        self._lock = asyncio.Lock()

    async def get(self, read: Callable[[], Awaitable[T]]) -> T:
        """The cached value, or a fresh one from `read` if it is older than the ttl."""
        async with self._lock:
            if self._value is None or time.monotonic() - self._at >= self._ttl:
                self._value = await read()
                self._at = time.monotonic()
            return self._value


class Metrics:
    """The metrics of one node. Attributes are bound metrics the hot paths call directly;
    methods are for the paths where a label must be chosen (at most once per request,
    connection or refusal, never per frame)."""

    def __init__(self, enabled: bool = True, cache_seconds: float = 5.0) -> None:
        self.enabled = enabled
        self.registry = CollectorRegistry()
        self.outbox: Snapshot[dict[str, int]] = Snapshot(cache_seconds)
        self._timed: dict[tuple[str, str, int], float] = {}
        r = self.registry

        def count(name: str, doc: str) -> Count:
            return Counter(name, doc, registry=r) if enabled else OFF

        def labelled(name: str, doc: str, label: str, values: Sequence[object]) -> dict[str, Count]:
            if not enabled:
                return {str(v): OFF for v in values}
            family = Counter(name, doc, [label], registry=r)
            return {str(v): family.labels(str(v)) for v in values}

        def timing(name: str, doc: str) -> Timing:
            return Histogram(name, doc, buckets=LATENCY_BUCKETS, registry=r) if enabled else OFF

        self.connections: Level = (
            Gauge("rtt_connections", "open RTT WebSockets on this node", registry=r)
            if enabled
            else OFF
        )
        self.connects = count("rtt_connects", "RTT WebSockets opened (upgrades accepted)")
        codes = [*sorted({int(c) for c in CloseCode} | set(PEER_CLOSE_CODES)), "other"]
        self._disconnects = labelled(
            "rtt_disconnects",
            "RTT WebSockets closed, by close code: the node's, else the client's, 1006 when "
            "the TCP connection ended without one",
            "code",
            codes,
        )
        self.slow_consumer_closes = count(
            "rtt_slow_consumer_closes", "sockets closed 4003 for leaving too much unread"
        )
        self.frames_pushed = count(
            "rtt_frames_pushed", "live frames this node's hub handed to its sockets"
        )
        self.sends = count("rtt_sends", "sends stored and published (one per send)")
        self.deliveries = count("rtt_deliveries", "recipients of the sends stored (per send)")
        self.store_seconds = timing(
            "rtt_store_seconds", "time a send's store transaction took (persist)"
        )
        self.send_to_push_seconds = timing(
            "rtt_send_to_push_seconds",
            "from a send's store write to its fan-out reaching this node's hub (sends made "
            "on this node; on redis the pub/sub round trip is included)",
        )
        self.broker_reconnects = count(
            "rtt_broker_reconnects", "broker resubscriptions after which sessions heal"
        )
        self._rate_limited = labelled(
            "rtt_rate_limited",
            "requests refused for a rate limit, by dialect",
            "dialect",
            DIALECTS,
        )
        self._requests: dict[tuple[str, str, str], Count] = {}
        self._request_family = (
            Counter(
                "rtt_requests",
                "operations run through the registry, by the door they came through and "
                "service/OPERATION (the sends: *SEND*, chatUserMessages/CREATE)",
                ["dialect", "operation"],
                registry=r,
            )
            if enabled
            else None
        )
        self._outbox_depth = (
            Gauge(
                "rtt_push_outbox_depth",
                f"push outbox entries waiting, per app (read at scrape time, cached "
                f"{cache_seconds:g} s)",
                ["app"],
                registry=r,
            )
            if enabled
            else None
        )
        self._dead_letters = (
            Counter(
                "rtt_push_dead_letters",
                "push entries this node's dispatcher gave up on (moved to dead letters), per app",
                ["app"],
                registry=r,
            )
            if enabled
            else None
        )

    # --- connections -----------------------------------------------------------------------

    def opened(self) -> None:
        """A WebSocket was upgraded."""
        self.connects.inc()
        self.connections.inc()

    def closed(self, code: int) -> None:
        """A WebSocket closed with `code`."""
        self.connections.dec()
        self._disconnects.get(str(code), self._disconnects["other"]).inc()
        if code == CloseCode.SLOW_CONSUMER:
            self.slow_consumer_closes.inc()

    # --- requests and sends ----------------------------------------------------------------

    def ran(self, dialect: str, service: str, operation: str) -> None:
        """A registered operation ran (only registered names reach here: the label set is
        bounded by the registry)."""
        key = (dialect, service, operation)
        child = self._requests.get(key)
        if child is None:
            if self._request_family is None:
                return
            child = self._requests[key] = self._request_family.labels(
                dialect, f"{service}/{operation}"
            )
        child.inc()

    def rate_limited(self, dialect: str) -> None:
        self._rate_limited.get(dialect, OFF).inc()

    def stored(self, started: float, app: str, first: str | None, seqs: Sequence[int]) -> None:
        """A send's store write (begun at perf_counter `started`) committed `seqs`; `first` is
        its first target, by which its fan-out is recognised when it reaches the hub."""
        if not self.enabled:
            return
        self.store_seconds.observe(time.perf_counter() - started)
        self.sends.inc()
        self.deliveries.inc(len(seqs))
        if first is not None and seqs and seqs[0]:
            timed = self._timed
            if len(timed) >= MAX_TIMED_SENDS:
                del timed[next(iter(timed))]
            timed[(app, first, seqs[0])] = started

    def arrived(self, app: str, profiles: Sequence[str], seqs: Sequence[int]) -> None:
        """A fan-out reached the hub: if this node timed its send, observe send→push."""
        if self._timed and profiles:
            started = self._timed.pop((app, profiles[0], seqs[0]), None)
            if started is not None:
                self.send_to_push_seconds.observe(time.perf_counter() - started)

    # --- push ------------------------------------------------------------------------------

    def outbox_depth(self, depths: dict[str, int]) -> None:
        """Record the outbox depth per app, as just read from the engine."""
        if self._outbox_depth is not None:
            for app, depth in depths.items():
                self._outbox_depth.labels(app).set(depth)

    def dead_lettered(self, app: str, count: int = 1) -> None:
        """Hook for the push dispatcher: `count` entries of `app` went to dead letters."""
        if self._dead_letters is not None:
            self._dead_letters.labels(app).inc(count)

    # --- reading ---------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """Every metric in Prometheus text format."""
        return generate_latest(self.registry)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's current value (0 if absent), e.g. `value("rtt_sends_total")`."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else found
