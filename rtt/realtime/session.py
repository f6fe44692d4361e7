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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
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


class Session:
    """The live half of one RTT connection."""

    __slots__ = (
        "_closed",
        "_gap_timer",
        "_healer",
        "_live",
        "_pending",
        "_replay_bytes",
        "_store",
        "_wire",
        "app",
        "last_seq",
        "profile",
    )

    def __init__(self, app: str, profile: str, store: Store, wire: Wire, replay_bytes: int) -> None:
        self.app = app
        self.profile = profile
        self._store = store
        self._wire = wire
        self._replay_bytes = replay_bytes  # the most frames a replay holds at once, in bytes
        self.last_seq = 0
        self._live = False  # False while the store is being read; live frames wait in pending
        self._pending: list[tuple[int, bytes]] = []
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
            self._pending.append((seq, frame))
        elif seq == self.last_seq + 1:
            self.last_seq = seq
            self._wire.write(frame)
            if self._pending and self._drain_pending() and self._gap_timer is not None:
                self._gap_timer.cancel()  # the late frame arrived: no store read needed
                self._gap_timer = None
        elif seq > self.last_seq:
            # Concurrent sends may publish out of order: give the missing frame a moment to
            # arrive before reading it back from the store.
            self._pending.append((seq, frame))
            if self._gap_timer is None:
                self._gap_timer = asyncio.get_running_loop().call_later(
                    GAP_GRACE_SECONDS, self._gap_expired
                )

    def _gap_expired(self) -> None:
        self._gap_timer = None
        if self._pending:
            self._start_healing()

    # --- replay and healing ----------------------------------------------------------------

    async def resume(self, since: int) -> None:
        """Replay everything after `since`, then go live with no gap."""
        self.last_seq = since
        await self._catch_up()

    def start(self, latest: int) -> None:
        """Go live right after `latest`, the profile's position read after the hub knew this
        session: every later item is published after that read, so it is in `pending` or on
        its way, and nothing needs reading back (a gap still heals as usual)."""
        self.last_seq = latest
        if self._drain_pending():
            self._live = True
        else:
            self._start_healing()

    def heal(self) -> None:
        """Frames may have been lost upstream: read back whatever follows `last_seq`."""
        self._start_healing()

    def resync(self) -> None:
        """The store lost data: announce RESYNC and continue from its current position."""
        self._start_healing(resync=True)

    def _start_healing(self, resync: bool = False) -> None:
        if self._closed or (self._healer is not None and not self._healer.done()):
            return
        self._live = False
        self._healer = asyncio.get_running_loop().create_task(self._heal(resync))

    async def _heal(self, resync: bool) -> None:
        try:
            if resync:
                await self._resync()
            await self._catch_up()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the store is unreachable: let the client resume elsewhere
            log.warning("healing %s/%s failed: %s", self.app, self.profile, e)
            self._closed = True
            self._wire.close(CloseCode.TRY_AGAIN_LATER, "stream unavailable: resume with since")

    async def _catch_up(self) -> None:
        """Read the stream from `last_seq` in batches of REPLAY_BATCH frames or `replay_bytes`,
        whichever is less, until a batch brings nothing new (a batch cut at the byte budget
        looks like any other), then go live."""
        while not self._closed:
            before = self.last_seq
            items = await self._store.stream_since(
                self.app, self.profile, before, REPLAY_BATCH, self._replay_bytes
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
                continue
            if self._drain_pending():
                self._live = True
                return

    def _drain_pending(self) -> bool:
        """Queue buffered live frames in order; False if a gap remains to be read."""
        self._pending.sort(key=lambda item: item[0])
        while self._pending:
            seq, frame = self._pending[0]
            if seq <= self.last_seq:
                self._pending.pop(0)
            elif seq == self.last_seq + 1:
                self._pending.pop(0)
                self.last_seq = seq
                self._wire.write(frame)
            else:
                return False
        return True

    async def _resync(self) -> None:
        """The cursor is older than what is kept: tell the client to re-read its inbox."""
        self.last_seq = await self._store.latest_seq(self.app, self.profile)
        self._pending = [(s, f) for s, f in self._pending if s > self.last_seq]
        self.send_now(unsequenced("rtt", "RESYNC", {"seq": self.last_seq}))

    async def stop(self) -> None:
        self._closed = True
        if self._gap_timer is not None:
            self._gap_timer.cancel()
        if self._healer is not None and not self._healer.done():
            self._healer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._healer
