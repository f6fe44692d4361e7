"""The push dispatcher: drains the outbox of every app that has `[apps.X.push]`, at least once.

One round: claim a batch of entries under a lease (PushState.claim; entries of a dispatcher
that died are claimed again once its lease lapses), group them per profile, and for each
profile:
1. online now → settled without a notification: it got the items live or reads them on
   resume (no buzz for what the user is looking at, and none in a storm when it comes back);
2. no destination (no webhook, no device of a configured platform) → settled;
3. notified less than `collapse_seconds` ago → deferred until it may be notified again, when
   everything that piled up goes out as one notification with `count`;
4. else one notification (the newest item, `count` = the entries) to the webhook and to each
   device, skipping a destination whose dedupe key for an item is recorded; each delivery is
   recorded as soon as the provider took it, before the entry is settled, so a retry (or the
   dispatcher that takes over after a crash) never notifies that destination of it again.
A destination that failed makes its entries retry with exponential backoff and jitter; after
`max_attempts` they become dead letters. A token the provider says is gone is removed.

Providers are outbound adapters (rtt/push/) the dispatcher knows only as `Provider`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from rtt.domain.notification import (
    WEBHOOK,
    Delivery,
    Notification,
    Outcome,
    backoff,
    collapse,
    dedupe_key,
)
from rtt.domain.push import PushEntry
from rtt.engines.base import Claimed, Engine
from rtt.settings import PushConfig, Settings
from rtt.tasks import stop_task

log = logging.getLogger("rtt.push")
REPORT_SECONDS = 10.0  # while busy, a dispatcher logs its rate this often


class Provider(Protocol):
    """One push service (rtt/push/): `token` is the device token ("" for the webhook)."""

    async def send(self, notification: Notification, token: str) -> Outcome: ...


@dataclass
class Counters:
    """What a dispatcher did since it started (logged, and read by tests and benchmarks)."""

    claimed: int = 0
    delivered: int = 0  # provider requests that delivered
    settled: int = 0  # entries settled: notified, seen live, or with nowhere to go
    retried: int = 0
    dead: int = 0
    gone: int = 0  # devices removed because their token is no longer valid


@dataclass
class _Result:
    errors: list[str] = field(default_factory=list)


class _Recorder:
    """Records delivered dedupe keys in one engine call per turn of the loop rather than one
    per delivery; each delivery still waits until its keys are written."""

    def __init__(self, engine: Engine, ttl: float) -> None:
        self._engine = engine
        self._ttl = ttl
        self._keys: dict[str, list[str]] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, app: str, keys: list[str]) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._keys.setdefault(app, []).extend(keys)
        self._waiters.append(waiter)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await waiter

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the deliveries that finish in this turn join the write
        keys, waiters = self._keys, self._waiters
        self._keys, self._waiters, self._flushing = {}, [], None
        try:
            for app, some in keys.items():
                await self._engine.push.record_delivered(app, some, self._ttl)
        except Exception as e:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(e)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


def worker_name() -> str:
    """Unique per process and start: a lease names its holder."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Dispatcher:
    """Drains the outbox through `providers` (app id → destination kind → Provider)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        providers: Mapping[str, Mapping[str, Provider]],
        worker: str | None = None,
        on_dead: Callable[[str, int], object] = lambda app, count: None,
    ) -> None:
        self.settings = settings
        self._on_dead = on_dead  # (app, entries dead-lettered): the node's metrics
        self.engine = engine
        self.providers = providers
        self.worker = worker or worker_name()
        self.counters = Counters()
        self._apps = [a for a in providers if settings.apps[a].push is not None]
        self._requests = asyncio.Semaphore(settings.push_concurrency)
        self._held: dict[tuple[str, str], Claimed] = {}  # (app, pushId) → under our lease
        self._recorder = _Recorder(engine, settings.push_dedupe_seconds)

    async def run(self) -> None:
        """Drain for ever: a full batch is followed at once by the next, an empty one by a
        pause of `push_poll_seconds`. An engine failure is logged and retried."""
        swept = reported = time.monotonic()
        settled = 0
        while True:
            try:
                busy = await self.drain_once()
                now = time.monotonic()
                if now - swept > self.settings.sweep_interval_seconds:
                    swept = now
                    await self.engine.push.sweep()
                if now - reported > REPORT_SECONDS and self.counters.settled > settled:
                    await self._report(now - reported, self.counters.settled - settled)
                    reported, settled = now, self.counters.settled
            except Exception:
                log.exception("push dispatch failed; retrying")
                busy = 0
            if busy < self.settings.push_batch:
                await asyncio.sleep(self.settings.push_poll_seconds)

    async def _report(self, seconds: float, settled: int) -> None:
        """One log line on what was drained and what is left, while there is work."""
        depths = {app: await self.engine.push.depth(app) for app in self._apps}
        log.info(
            "push: %d entries settled in %.0f s (%.0f/s); outbox depth %s; %s",
            settled, seconds, settled / seconds, depths, self.counters,
        )  # fmt: skip

    async def drain_once(self) -> int:
        """One round; returns how many entries it claimed."""
        s = self.settings
        claimed = await self.engine.push.claim(
            self._apps, self.worker, s.push_batch, s.push_lease_seconds
        )
        if not claimed:
            return 0
        self.counters.claimed += len(claimed)
        self._held = {(c.app, c.entry.push_id): c for c in claimed}
        renewer = asyncio.create_task(self._renew())
        try:
            by_app: dict[str, dict[str, list[PushEntry]]] = {}
            for c in claimed:
                by_app.setdefault(c.app, {}).setdefault(c.entry.profile, []).append(c.entry)
            for app, groups in by_app.items():
                await self._dispatch_app(app, groups)
                self._release(app, [e for entries in groups.values() for e in entries])
        finally:
            await stop_task(renewer)
        return len(claimed)

    def _release(self, app: str, entries: list[PushEntry]) -> None:
        """Stop renewing these entries' lease: they are settled, dead or parked (renewing a
        parked entry would put its retry off)."""
        for e in entries:
            self._held.pop((app, e.push_id), None)

    async def _renew(self) -> None:
        """Extend the lease of what is still being worked on, every third of it."""
        lease = self.settings.push_lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            with contextlib.suppress(Exception):  # a missed renewal only risks a duplicate
                await self.engine.push.renew(list(self._held.values()), self.worker, lease)

    async def _dispatch_app(self, app: str, groups: dict[str, list[PushEntry]]) -> None:
        config = self.settings.apps[app].push
        assert config is not None
        push = self.engine.push
        senders = self.providers[app]
        online = await self.engine.presence.online(app, list(groups))
        settled = [e.push_id for p in online for e in groups.get(p, [])]
        offline = [p for p in groups if p not in online]
        devices = await push.devices(app, offline)
        targets: dict[str, list[tuple[str, Provider, str]]] = {}
        for profile in offline:
            found = [(WEBHOOK, senders[WEBHOOK], "")] if WEBHOOK in senders else []
            for d in devices.get(profile, []):
                if d.platform in senders:
                    found.append((f"{d.platform}:{d.token}", senders[d.platform], d.token))
            if found:
                targets[profile] = found
            else:
                settled += [e.push_id for e in groups[profile]]
        waits = await push.gate(app, list(targets), config.collapse_seconds)
        for profile, wait in waits.items():
            if wait > 0:
                await push.retry(
                    app, groups[profile], wait, False, self.settings.push_lease_seconds
                )
                self._release(app, groups[profile])
        ready = [p for p, wait in waits.items() if wait <= 0]
        keys = [dedupe_key(e, t[0]) for p in ready for t in targets[p] for e in groups[p]]
        done = await push.delivered(app, keys)
        results = await asyncio.gather(
            *(self._notify(app, p, groups[p], targets[p], done) for p in ready)
        )
        for profile, result in zip(ready, results, strict=True):
            if result.errors:
                await self._failed(app, config, groups[profile], "; ".join(result.errors))
            else:
                settled += [e.push_id for e in groups[profile]]
        await push.done(app, settled)
        self.counters.settled += len(settled)

    async def _notify(
        self,
        app: str,
        profile: str,
        entries: list[PushEntry],
        targets: list[tuple[str, Provider, str]],
        done: set[str],
    ) -> _Result:
        result = _Result()

        async def one(destination: str, provider: Provider, token: str) -> None:
            keys = {e.push_id: dedupe_key(e, destination) for e in entries}
            todo = [e for e in entries if keys[e.push_id] not in done]
            if not todo:
                return
            async with self._requests:
                try:
                    outcome = await provider.send(collapse(app, todo), token)
                except Exception as e:  # a provider's network trouble is a failed attempt
                    outcome = Outcome(Delivery.RETRY, f"{destination.split(':')[0]}: {e!r}")
            if outcome.delivery is Delivery.DELIVERED:
                await self._recorder.record(app, [keys[e.push_id] for e in todo])
                self.counters.delivered += 1
            elif outcome.delivery is Delivery.GONE:
                platform = destination.split(":", 1)[0]
                await self.engine.push.remove_device(app, profile, platform, token)
                self.counters.gone += 1
                log.info(
                    "push: %s token of %s/%s removed: %s", platform, app, profile, outcome.detail
                )
            else:
                result.errors.append(outcome.detail)

        await asyncio.gather(*(one(*t) for t in targets))
        return result

    async def _failed(
        self, app: str, config: PushConfig, entries: list[PushEntry], error: str
    ) -> None:
        """Retry later with backoff, or give up on the entries out of attempts."""
        s = self.settings
        spent = [e for e in entries if e.attempts + 1 >= config.max_attempts]
        again = [e for e in entries if e.attempts + 1 < config.max_attempts]
        if spent:
            await self.engine.push.dead(app, spent, error, s.push_dead_letters_max)
            self.counters.dead += len(spent)
            self._on_dead(app, len(spent))
            log.warning("push: %d entries of %s dead-lettered: %s", len(spent), app, error)
        if again:
            tries = max(e.attempts for e in again) + 1
            delay = backoff(tries, s.push_backoff_seconds, s.push_backoff_max_seconds)
            await self.engine.push.retry(app, again, delay, True, s.push_lease_seconds)
            self.counters.retried += len(again)
