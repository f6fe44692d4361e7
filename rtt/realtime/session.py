"""One live socket: an ordered, gap-free, duplicate-free view of its profile's stream.

Frames reach a session from the hub (live) and from the store (replay and healing). The
session keeps `last_seq`, the last stream position it wrote, and only ever writes
`last_seq + 1`: anything older is a duplicate and dropped; anything newer means a frame was
missed or is still in flight. After a short grace the gap is read back from the store, where
every pushed item was committed before it was published. Meanwhile frames wait in `pending`.

Frames are written synchronously to the socket's transport (see websocket/protocol.py): no task,
queue or await per frame. The connection's byte budget is the bound: a client that lets more
than RTT_SOCKET_BUFFER_BYTES pile up unread is closed as too slow (4003) and resumes with
`since`, so one slow client never delays the others. Replay and healing read the store in
batches of at most REPLAY_BATCH frames and RTT_SOCKET_BUFFER_BYTES bytes, and write them at the
client's pace.

Every session's state is bounded. Live frames that arrive while the store is being read wait in
`pending` up to RTT_SESSION_PENDING_BYTES; past that they are all dropped and read back from the
store, which has every item (the client sees no gap and no duplicate). Healing's store reads
run at most RTT_HEALS_IN_FLIGHT at once node-wide, so a broker blip with thousands of sockets
queues their reads instead of exhausting the store's connections; a read that fails, or a gap
the store cannot fill yet, is retried after a jittered, growing wait for up to
RTT_HEAL_RETRY_SECONDS, and only then is the socket closed 1013 (resume with `since`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Protocol

from rtt.engines.base import Store
from rtt.errors import CloseCode
from rtt.protocol import unsequenced
from rtt.websocket.frames import text_frame

log = logging.getLogger("rtt.session")

REPLAY_BATCH = 500
GAP_GRACE_SECONDS = 0.1


class Wire(Protocol):
    """Where a session's frames go: whole WebSocket frames, written at once."""

    def write(self, frame: bytes) -> None:
        """Write one frame under the connection's byte budget (over it, the wire closes 4003)."""
        ...

    async def drain(self) -> bool:
        """Wait until the buffered bytes are back under the transport's high-water mark (a
        bounded wait); False once the wire is closing and nothing more will be written."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close the socket with a WebSocket close code; later writes are dropped."""
        ...


class Healing:
    """What a node's sessions share: their bounds, and the store reads they may run at once."""

    __slots__ = ("pending_bytes", "reads", "replay_bytes", "retry_seconds")

    def __init__(
        self, replay_bytes: int, pending_bytes: int, reads_in_flight: int, retry_seconds: float
    ) -> None:
        self.replay_bytes = replay_bytes  # the most frames one replay batch holds, in bytes
        self.pending_bytes = pending_bytes  # the most live frames a session holds, in bytes
        self.reads = asyncio.Semaphore(reads_in_flight)
        self.retry_seconds = retry_seconds

    @staticmethod
    def backoff(attempt: int) -> float:
        """Full jitter over a doubling ceiling (50 ms, 100 ms, ... at most 2 s): sessions that
        failed together do not all retry together."""
        return random.uniform(0.0, min(2.0, 0.05 * 2**attempt))


class _GaveUp(Exception):
    """The store could not be read (or could not fill a gap) for RTT_HEAL_RETRY_SECONDS."""


class Session:
    """The live half of one RTT connection."""

    __slots__ = (
        "_closed",
        "_dropped",
        "_gap_timer",
        "_healer",
        "_healing",
        "_live",
        "_pending",
        "_pending_bytes",
        "_store",
        "_wire",
        "app",
        "last_seq",
        "profile",
    )

    def __init__(self, app: str, profile: str, store: Store, wire: Wire, healing: Healing) -> None:
        self.app = app
        self.profile = profile
        self._store = store
        self._wire = wire
        self._healing = healing
        self.last_seq = 0
        self._live = False  # False while the store is being read; live frames wait in pending
        self._pending: list[tuple[int, bytes]] = []
        self._pending_bytes = 0
        self._dropped = False  # pending frames were dropped: the store must be read once more
        self._closed = False
        self._healer: asyncio.Task[None] | None = None
        self._gap_timer: asyncio.TimerHandle | None = None

    # --- producers -------------------------------------------------------------------------

    def send_now(self, payload: bytes) -> None:
        """Write a JSON frame outside the stream (a reply, a control frame)."""
        self._wire.write(text_frame(payload))

    def push(self, seq: int, frame: bytes) -> None:
        """A live frame from the hub, already WebSocket-framed; seq 0 is outside the stream."""
        if seq == 0:
            self._wire.write(frame)
        elif not self._live:
            self._hold(seq, frame)
        elif seq == self.last_seq + 1:
            self.last_seq = seq
            self._wire.write(frame)
            if self._pending and self._drain_pending() and self._gap_timer is not None:
                self._gap_timer.cancel()  # the late frame arrived: no store read needed
                self._gap_timer = None
        elif seq > self.last_seq:
            # Concurrent sends may publish out of order: give the missing frame a moment to
            # arrive before reading it back from the store.
            self._hold(seq, frame)
            if self._live and self._gap_timer is None:
                self._gap_timer = asyncio.get_running_loop().call_later(
                    GAP_GRACE_SECONDS, self._gap_expired
                )

    def _hold(self, seq: int, frame: bytes) -> None:
        """Keep a frame that cannot be written yet, within RTT_SESSION_PENDING_BYTES; past it,
        drop every held frame (the store has them all) and make sure the store is read again."""
        held = self._pending_bytes + len(frame)
        if held > self._healing.pending_bytes:
            self._drop_pending()
            self._dropped = True
            if self._live:
                self._start_healing()
            return
        self._pending.append((seq, frame))
        self._pending_bytes = held

    def _gap_expired(self) -> None:
        self._gap_timer = None
        if self._pending:
            self._start_healing()

    # --- replay and healing ----------------------------------------------------------------

    async def resume(self, since: int) -> None:
        """Replay everything after `since`, then go live with no gap."""
        self.last_seq = since
        try:
            await self._catch_up()
        except _GaveUp as e:
            self._give_up(e)

    def start(self, latest: int) -> None:
        """Go live right after `latest`, the profile's position read after the hub knew this
        session: every later item is published after that read, so it is in `pending` or on
        its way, and nothing needs reading back (a gap still heals as usual)."""
        self.last_seq = latest
        if not self._dropped and self._drain_pending():
            self._live = True
        else:
            self._start_healing()

    def heal(self) -> None:
        """Frames may have been lost upstream: read back whatever follows `last_seq`."""
        self._start_healing()

    def resync(self) -> None:
        """The store lost data: announce RESYNC and continue from its current position. Held
        frames, and a healing in progress, belong to the stream that was lost: both go."""
        self._drop_pending()
        self._dropped = False
        if self._healer is not None and not self._healer.done():
            self._healer.cancel()
        self._start_healing(resync=True)

    def _start_healing(self, resync: bool = False) -> None:
        if self._closed or (self._healer is not None and not self._healer.done()):
            return
        self._live = False
        self._healer = asyncio.get_running_loop().create_task(self._heal(resync))

    async def _heal(self, resync: bool) -> None:
        """Resync if asked, then catch up; a failing store is retried (jittered backoff) for
        RTT_HEAL_RETRY_SECONDS, then the client is told to resume elsewhere."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._healing.retry_seconds
        attempt = 0
        while True:
            try:
                if resync:
                    await self._resync()
                    resync = False
                await self._catch_up(deadline)
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                attempt += 1
                delay = self._healing.backoff(attempt)
                if isinstance(e, _GaveUp) or loop.time() + delay > deadline:
                    self._give_up(e)
                    return
                await asyncio.sleep(delay)

    def _give_up(self, why: Exception) -> None:
        """The store is unreachable or incomplete: let the client resume, here or elsewhere."""
        log.warning("healing %s/%s failed: %s", self.app, self.profile, why)
        self._closed = True
        self._wire.close(CloseCode.TRY_AGAIN_LATER, "stream unavailable: resume with since")

    async def _catch_up(self, deadline: float | None = None) -> None:
        """Read the stream from `last_seq` in batches of REPLAY_BATCH frames or `replay_bytes`,
        whichever is less, until a batch brings nothing new (a batch cut at the byte budget
        looks like any other), then go live. A gap the store does not fill is read again after
        a jittered, growing wait, until `deadline` (RTT_HEAL_RETRY_SECONDS from now if None)."""
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self._healing.retry_seconds
        waits = 0
        while not self._closed:
            before = self.last_seq
            async with self._healing.reads:
                items = await self._store.stream_since(
                    self.app, self.profile, before, REPLAY_BATCH, self._healing.replay_bytes
                )
            if items is None:
                await self._resync()
                items = []
            for seq, payload in items:
                if seq == self.last_seq + 1:
                    self.last_seq = seq
                    self.send_now(payload)
                    # a backlog goes at the client's pace, not ours (within the wire's bound)
                    if not await self._wire.drain():
                        self._closed = True
                        return
            if self.last_seq > before:
                waits = 0
                continue
            if self._dropped:  # every frame dropped so far was committed before this read
                self._dropped = False
                continue
            if self._drain_pending():
                self._live = True
                return
            waits += 1
            delay = self._healing.backoff(waits)
            if loop.time() + delay > deadline:
                raise _GaveUp(f"seq {self.last_seq + 1} is not in the store")
            await asyncio.sleep(delay)

    def _drain_pending(self) -> bool:
        """Queue buffered live frames in order; False if a gap remains to be read."""
        pending = self._pending
        pending.sort(key=lambda item: item[0])
        done = freed = 0
        for seq, frame in pending:
            if seq == self.last_seq + 1:
                self.last_seq = seq
                self._wire.write(frame)
            elif seq > self.last_seq:
                break
            done += 1
            freed += len(frame)
        del pending[:done]
        self._pending_bytes -= freed
        return not pending

    def _drop_pending(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0

    async def _resync(self) -> None:
        """The cursor is older than what is kept: tell the client to re-read its inbox."""
        async with self._healing.reads:
            self.last_seq = await self._store.latest_seq(self.app, self.profile)
        kept = [(s, f) for s, f in self._pending if s > self.last_seq]
        self._pending = kept
        self._pending_bytes = sum(len(f) for _, f in kept)
        self.send_now(unsequenced("rtt", "RESYNC", {"seq": self.last_seq}))

    async def stop(self) -> None:
        self._closed = True
        if self._gap_timer is not None:
            self._gap_timer.cancel()
        if self._healer is not None and not self._healer.done():
            self._healer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._healer
