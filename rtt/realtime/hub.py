"""The hub: this node's map of profile → live sessions, and the broker's only subscriber.

A fan-out renders each recipient's frame once (however many devices it has online) and hands
it to its sessions without awaiting anything, so one send costs the hub no task per recipient.
"""

from __future__ import annotations

from rtt.engines.base import Fanout, Presence
from rtt.realtime.session import Session
from rtt.websocket.frames import text_frame


class Hub:
    """Sessions by (app, profile); presence is told when a profile comes and goes."""

    def __init__(self, presence: Presence) -> None:
        self._presence = presence
        self._sessions: dict[tuple[str, str], set[Session]] = {}

    def dispatch(self, fanout: Fanout) -> None:
        """Broker handler: push each target's frame to its sessions on this node."""
        sessions_of = self._sessions.get
        app, frame = fanout.app, fanout.frame
        for profile, seq, mid in fanout.targets:
            sessions = sessions_of((app, profile))
            if sessions:
                data = text_frame(frame.render(seq, mid))
                for session in sessions:
                    session.push(seq, data)

    async def join(self, session: Session) -> None:
        key = (session.app, session.profile)
        self._sessions.setdefault(key, set()).add(session)
        await self._presence.join(*key)

    async def leave(self, session: Session) -> None:
        key = (session.app, session.profile)
        sessions = self._sessions.get(key)
        if sessions is None or session not in sessions:
            return
        sessions.discard(session)
        if not sessions:
            del self._sessions[key]
        await self._presence.leave(*key)

    def heal_all(self) -> None:
        """Fanouts may have been lost (broker reconnect): every session re-reads its gap."""
        for sessions in self._sessions.values():
            for session in sessions:
                session.heal()

    def resync_all(self) -> None:
        """The store lost data: every session starts over from the current position."""
        for sessions in self._sessions.values():
            for session in sessions:
                session.resync()
