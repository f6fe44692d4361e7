"""The hub: this node's map of profile → live sessions, and the broker's only subscriber.

A fan-out renders each recipient's frame once (however many devices it has online) and hands
it to its sessions without awaiting anything, so one send costs the hub no task per recipient.
A large fan-out is handed out in slices of SLICE targets, one slice per turn of the event loop,
so a 100 000-recipient send does not hold every other socket up for its whole length.
"""

from __future__ import annotations

import asyncio
from collections import deque

from rtt.engines.base import Fanout, Presence
from rtt.metrics import Metrics
from rtt.realtime.session import Session
from rtt.websocket.frames import text_frame

# targets per turn of the event loop: a slice of mostly offline targets costs well under a ms;
# a fan-out of at most this many (the common send) is handed out at once, with no callback
SLICE = 2048


class Hub:
    """Sessions by (app, profile); presence is told when a profile comes and goes.

    Fan-outs are handed out in arrival order: while any is still being sliced, the next ones
    wait behind it in `_queue` (a fan-out and the index of its next target), so a later send
    never overtakes an earlier one's frames to the same profile.
    """

    def __init__(self, presence: Presence, metrics: Metrics) -> None:
        self._presence = presence
        self._metrics = metrics
        # a list, not a set: a profile nearly always has one socket, and a one-item list is a
        # third of a one-item set's size, per socket
        self._sessions: dict[tuple[str, str], list[Session]] = {}
        self._queue: deque[tuple[Fanout, int]] = deque()
        self._leaving: asyncio.Task[None] | None = None  # set once the node is stopping

    def dispatch(self, fanout: Fanout) -> None:
        """Broker handler: push each target's frame to its sessions on this node."""
        self._metrics.arrived(fanout.app, fanout.profiles, fanout.seqs)
        if self._queue:
            self._queue.append((fanout, 0))
            return
        if len(fanout.profiles) <= SLICE:
            self._push(fanout, 0, SLICE)
            return
        self._push(fanout, 0, SLICE)
        self._queue.append((fanout, SLICE))
        asyncio.get_running_loop().call_soon(self._next_slice)

    def _next_slice(self) -> None:
        """One slice of the oldest fan-out waiting; the rest at the next turn of the loop."""
        queue = self._queue
        if not queue:
            return
        fanout, start = queue[0]
        end = start + SLICE
        self._push(fanout, start, end)
        if end < len(fanout.profiles):
            queue[0] = (fanout, end)
        else:
            queue.popleft()
        if queue:
            asyncio.get_running_loop().call_soon(self._next_slice)

    def _push(self, fanout: Fanout, start: int, end: int) -> None:
        """The targets [start, end) of `fanout`."""
        sessions_of = self._sessions.get
        app, frame = fanout.app, fanout.frame
        profiles, seqs, parts = fanout.profiles, fanout.seqs, fanout.parts
        pushed = 0  # frames of this slice, counted once per slice (metrics)
        for profile, seq, mid in zip(
            profiles[start:end], seqs[start:end], parts[start:end], strict=True
        ):
            sessions = sessions_of((app, profile))
            if sessions:
                data = text_frame(frame.render(seq, mid))
                pushed += len(sessions)
                for session in sessions:
                    session.push(seq, data)
        self._metrics.frames_pushed.inc(pushed)

    async def join(self, session: Session) -> None:
        key = (session.app, session.profile)
        self._sessions.setdefault(key, []).append(session)
        await self._presence.join(*key)

    async def leave(self, session: Session) -> None:
        key = (session.app, session.profile)
        sessions = self._sessions.get(key)
        if sessions is None or session not in sessions:
            return
        sessions.remove(session)
        if not sessions:
            del self._sessions[key]
        if self._leaving is None:
            await self._presence.leave(*key)

    def stopping(self) -> None:
        """The node is shutting down and every socket is about to close: drop this node's
        presence in one step instead of one leave per socket (with 2 000 sockets on redis
        those took 1-5 s of the shutdown's time)."""
        if self._leaving is None:
            self._leaving = asyncio.get_running_loop().create_task(self._presence.leave_all())

    def counts(self) -> tuple[int, int]:
        """(profiles, sockets) connected to this node, for `GET /status`."""
        return len(self._sessions), sum(map(len, self._sessions.values()))

    def heal_all(self) -> None:
        """Fanouts may have been lost (broker reconnect): every session re-reads its gap."""
        for sessions in self._sessions.values():
            for session in sessions:
                session.heal()

    def resync_all(self) -> None:
        """The store lost data: every session starts over from the current position, and
        fan-outs still waiting (numbered in the lost data set) are dropped."""
        self._queue.clear()
        for sessions in self._sessions.values():
            for session in sessions:
                session.resync()
