"""A token bucket: `rate` requests per second with bursts up to `rate`, clock passed in."""

from __future__ import annotations


class TokenBucket:
    """Allows a steady `rate` per second; a burst may spend up to one second's worth."""

    __slots__ = ("_rate", "_stamp", "_tokens")  # one per socket

    def __init__(self, rate: float, now: float) -> None:
        self._rate = rate
        self._tokens = rate
        self._stamp = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._rate, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
