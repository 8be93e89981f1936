"""Retrying until it works: the one policy for work that must never be dropped.

Every retry in tradepipe goes through stamina (capped exponential backoff with jitter, on
tenacity). The store's upsert (``store/upsert.py``) and the sink's object write
(``sink/service.py``) are bounded in attempts and time; the work below is retried for ever,
because giving up would lose what is held only in memory:

- the producer's publisher starting its output (the broker is down: trades wait in the outbox);
- local mode's loader upserting objects (the database is down: objects wait in its queue);
- the producer's REST backfill of a missing range, whose own give-up time and ``Retry-After``
  waits (``producer/backfill.py`` rules 3-4) ride on this policy's backoff.

Rules:

1. **Until it works or the task is cancelled** (stamina's ``attempts=None, timeout=None``). A
   shutdown cancels the task; its owner reports what was left behind (never silent).
2. **Capped, jittered waits.** The n-th wait is ``min(wait_max, wait_initial * 2**(n-1) +
   uniform(0, wait_initial))`` (stamina's formula, jitter as large as the first wait), so
   clients that lost the same server do not come back in step.
3. **The caller counts and logs.** Each failed attempt is counted and logged inside the attempt
   by the code that knows what failed (its own metric and event names); stamina's default
   instrumentation also reports every scheduled retry (structlog ``stamina.retry_scheduled``
   with the exact wait, Prometheus ``stamina_retries_total``).
4. **Only the named errors are retried.** Anything else is a bug: it propagates at once.

Not here: the feed's WebSocket reconnect (``producer/backoff.py``), which overlaps two live
connections, resets after a connection that delivered, and obeys Binance's attempt limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import stamina

# Exception types to retry on, or stamina's backoff hook: the exception -> retry it (True),
# wait exactly that many seconds first (a float, e.g. a server's Retry-After), or not (False).
Retryable = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool | float]


@dataclass(frozen=True, slots=True)
class RetryForever:
    """Rule 1-2's parameters; :meth:`attempts` is the stamina retry context to run under."""

    wait_initial: float = 0.2
    wait_max: float = 10.0

    def attempts(self, on: Retryable) -> AsyncIterator[stamina.Attempt]:
        """``async for attempt in policy.attempts(on): with attempt: ...`` (rule 4)."""
        return stamina.retry_context(
            on=on,
            attempts=None,
            timeout=None,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            wait_jitter=self.wait_initial,
        )
