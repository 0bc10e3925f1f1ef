"""A token bucket on the `now` it is given (sans-IO)."""

from __future__ import annotations

__all__ = ["RateLimit"]


class RateLimit:
    """At most `per_second` events a second, in bursts of at most that many.
    `allow(now)` takes one token if there is one. per_second <= 0: no limit."""

    __slots__ = ("rate", "tokens", "at", "suppressed")

    def __init__(self, per_second: float) -> None:
        self.rate = per_second
        self.tokens = float(per_second)
        self.at = None
        self.suppressed = 0

    def allow(self, now: float) -> bool:
        if self.rate <= 0:
            return True
        if self.at is not None and now > self.at:
            self.tokens = min(float(self.rate), self.tokens + (now - self.at) * self.rate)
        self.at = now if self.at is None or now > self.at else self.at
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.suppressed += 1
        return False
