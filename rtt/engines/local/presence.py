"""In-process presence: a count of live sessions per profile on this one node."""

from __future__ import annotations

from collections import Counter


class LocalPresence:
    """Exact, since every session lives in this process."""

    def __init__(self) -> None:
        self._sessions: Counter[tuple[str, str]] = Counter()

    async def start(self) -> None:
        """Nothing to start: the counts live in this process."""

    async def close(self) -> None:
        self._sessions.clear()

    async def join(self, app: str, profile: str) -> None:
        self._sessions[(app, profile)] += 1

    async def leave(self, app: str, profile: str) -> None:
        key = (app, profile)
        self._sessions[key] -= 1
        if self._sessions[key] <= 0:
            del self._sessions[key]

    async def online(self, app: str, profiles: list[str]) -> set[str]:
        return {p for p in profiles if (app, p) in self._sessions}
