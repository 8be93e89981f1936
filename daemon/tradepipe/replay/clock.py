"""The replay clock: one clock over the data, shared by every connection.

Rules:
1. Before :meth:`ReplayClock.start` no data time has been reached: nothing is published.
2. Once started, data time advances ``speed`` times as fast as wall time from the data's first
   trade time; ``speed == 0`` means "as fast as possible": every data time is reached at once.
3. :meth:`pause` freezes data time; :meth:`resume` continues from where it froze (the paused
   span is skipped, not caught up). ``pause(before_ms)`` freezes it below ``before_ms`` at most:
   the publisher passes the time of the next trade it has not published yet, so a trade already
   reached but not yet sent (e.g. the tape's first millisecond right after :meth:`start`) is
   not published while paused — nothing more is, at any speed.
4. Served trade times (``--rebase-time``): a trade reached at data time ``T`` is served with
   the wall-clock epoch time at which the clock was scheduled to reach ``T`` — so served times
   start at "now" and stay close to the wall clock whatever the speed. At ``speed == 0`` it is
   the wall time of publication. Served times never decrease.

The clock does no I/O and never sleeps; the publisher asks it how long to wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class ReplayClock:
    def __init__(
        self,
        speed: float,
        origin_ms: int,
        monotonic: Callable[[], float] = time.monotonic,
        epoch: Callable[[], float] = time.time,
    ) -> None:
        if speed < 0 or not math.isfinite(speed):
            raise ValueError(f"speed {speed!r} must be a finite number >= 0")
        self.speed = speed
        self._monotonic, self._epoch = monotonic, epoch
        self._anchor_data = float(origin_ms)  # data time (ms) at the anchor
        self._anchor_wall = 0.0  # monotonic seconds at the anchor
        self._anchor_epoch_ms = 0.0  # epoch ms at the anchor
        self._last_served_ms = 0
        self.started = False
        self.paused = False

    def start(self) -> None:
        if not self.started:
            self.started = True
            self._set_anchor(self._anchor_data)

    def pause(self, before_ms: float = math.inf) -> None:
        """Freeze data time (rule 3), below ``before_ms`` at most."""
        if self.started and not self.paused:
            # at speed 0 there is no data time to freeze at: nothing more is reached
            reached = self.data_now() if self.speed else -math.inf
            self._anchor_data = min(reached, math.nextafter(before_ms, -math.inf))
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._set_anchor(self._anchor_data if self.speed else 0.0)

    def _set_anchor(self, data_ms: float) -> None:
        self._anchor_data = data_ms
        self._anchor_wall = self._monotonic()
        self._anchor_epoch_ms = self._epoch() * 1000.0

    def data_now(self) -> float:
        """The data time (ms) reached so far; ``-inf`` before start, ``inf`` at speed 0."""
        if not self.started:
            return -math.inf
        if self.paused:
            return self._anchor_data
        if self.speed == 0:
            return math.inf
        return self._anchor_data + (self._monotonic() - self._anchor_wall) * 1000.0 * self.speed

    def seconds_until(self, data_ms: int) -> float:
        """Wall seconds until ``data_ms`` is reached (0 if it has been; ``inf`` if stopped)."""
        now = self.data_now()
        if now >= data_ms:
            return 0.0
        if not self.started or self.paused:
            return math.inf
        return (data_ms - now) / (1000.0 * self.speed)

    def serve_time(self, data_ms: int) -> int:
        """The epoch ms a trade reached at ``data_ms`` is served with (rule 4)."""
        if self.speed == 0:
            served = int(self._epoch() * 1000.0)
        else:
            served = int(self._anchor_epoch_ms + (data_ms - self._anchor_data) / self.speed)
        served = max(served, self._last_served_ms)
        self._last_served_ms = served
        return served
