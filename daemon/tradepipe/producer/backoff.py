"""Reconnect pacing: capped exponential backoff with full jitter, and Binance's attempt limit.

Pure policy objects: they compute delays from a clock value passed in; the caller sleeps.
"""

from __future__ import annotations

import random
from collections import deque


class Backoff:
    """Full jitter (``uniform(0, min(cap, base * 2**(n-1)))`` after the n-th consecutive
    failure); the first attempt after a healthy connection goes at once.

    A connection that delivered data resets the failure count (:meth:`succeeded`: the next
    reconnect after a drop goes at once, while trades are only in REST); so does one that
    stayed up ``healthy_after`` seconds. One that dropped sooner without delivering counts as
    a failure, so a server that accepts and then closes at once is not hammered (and
    :class:`AttemptLimiter` bounds the attempts whatever happens).
    """

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        healthy_after: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base, self.cap, self.healthy_after = base, cap, healthy_after
        self.failures = 0
        self._rng = rng or random.Random()

    def delay(self) -> float:
        if self.failures == 0:
            return 0.0
        ceiling = min(self.cap, self.base * 2 ** min(self.failures - 1, 30))
        return self._rng.uniform(0, ceiling)

    def failed(self) -> None:
        self.failures += 1

    def succeeded(self) -> None:
        self.failures = 0

    def connection_ended(self, lived_seconds: float, delivered: bool = False) -> None:
        if delivered or lived_seconds >= self.healthy_after:
            self.failures = 0
        else:
            self.failures += 1


class AttemptLimiter:
    """At most ``limit`` attempts in any ``window`` seconds (Binance: 300 per 5 minutes per IP;
    we keep well below so other clients on the host have room)."""

    def __init__(self, limit: int = 100, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._times: deque[float] = deque()

    def wait_for(self, now: float) -> float:
        """Seconds to wait before an attempt at ``now`` is allowed."""
        while self._times and self._times[0] <= now - self.window:
            self._times.popleft()
        if len(self._times) < self.limit:
            return 0.0
        return self._times[0] + self.window - now

    def record(self, now: float) -> None:
        self._times.append(now)
