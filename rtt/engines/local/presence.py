"""In-process presence: a count of live sessions per profile on this one node."""

from __future__ import annotations

from collections import Counter


class LocalPresence:
    """Exact, since every session lives in this process. Keyed by app, then profile, so a
    send's online check is one set intersection rather than a lookup per recipient."""

    def __init__(self) -> None:
        self._sessions: dict[str, Counter[str]] = {}

    async def start(self) -> None:
        """Nothing to start: the counts live in this process."""

    async def close(self) -> None:
        self._sessions.clear()

    async def join(self, app: str, profile: str) -> None:
        self._sessions.setdefault(app, Counter())[profile] += 1

    async def leave(self, app: str, profile: str) -> None:
        counts = self._sessions.get(app)
        if counts is None:
            return
        counts[profile] -= 1
        if counts[profile] <= 0:
            del counts[profile]

    async def leave_all(self) -> None:
        self._sessions.clear()

    async def online(self, app: str, profiles: list[str]) -> set[str]:
        counts = self._sessions.get(app)
        # the online few, looked up in C; no set of every recipient is built
        return set() if not counts else counts.keys() & profiles
