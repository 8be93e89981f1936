"""Fills missing aggregate-id ranges from REST, page by page, in order.

Woken when a sequencer reports something missing (a jump in ids, a reconnect, trades refused
for room); also checks every second. For each symbol it fetches ``fromId = last_id + 1`` pages
of up to 1000 until nothing is missing, waiting for outbox room before each page so a backlog
never grows memory. Transient failures are retried with capped, jittered backoff; a range that
could not be fetched for ``give_up_seconds`` is given up, logged and counted (never dropped
silently). A 429/418 waits exactly the server's ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from tradepipe.producer.backoff import Backoff
from tradepipe.producer.intake import Intake
from tradepipe.producer.outbox import Outbox
from tradepipe.producer.rest import (
    MAX_LIMIT,
    AggTradesClient,
    RateLimited,
    RestRejected,
    RestUnavailable,
)
from tradepipe.producer.sequencer import Sequencer

log = structlog.get_logger(__name__)


class Backfiller:
    def __init__(
        self,
        intake: Intake,
        client: AggTradesClient,
        outbox: Outbox,
        give_up_seconds: float = 300.0,
        backoff: Backoff | None = None,
    ) -> None:
        self.intake, self.client, self.outbox = intake, client, outbox
        self.give_up_seconds = give_up_seconds
        self.backoff = backoff or Backoff(base=1.0, cap=30.0, healthy_after=0.0)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 1.0)
            self._wake.clear()
            for seq in self.intake.sequencers.values():
                await self.fill(seq)

    async def fill(self, seq: Sequencer) -> None:
        """Fetch until ``seq`` misses nothing (or give up on what cannot be fetched)."""
        failing_since: float | None = None
        self.backoff.failures = 0
        while (missing := seq.missing()) is not None:
            first, until = missing
            # a page never needs more than half the buffer: room for it comes back as acks do
            limit = min(MAX_LIMIT, max(1, self.outbox.max_records // 2))
            if until is not None:
                limit = min(limit, until - first + 1)
            await self.outbox.wait_room(limit)
            try:
                page = await self.client.fetch(seq.symbol, first, limit)
            except RestRejected as exc:
                log.error("backfill_rejected", symbol=seq.symbol, first=first, error=str(exc))
                self._give_up(seq, str(exc))
                return
            except RestUnavailable as exc:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since >= self.give_up_seconds:
                    self._give_up(seq, f"REST failing for {now - failing_since:.0f} s: {exc}")
                    return
                self.backoff.failed()
                delay = exc.retry_after if isinstance(exc, RateLimited) else self.backoff.delay()
                log.warning("backfill_retry", symbol=seq.symbol, first=first, error=str(exc),
                            retry_in=round(delay, 2))  # fmt: skip
                await asyncio.sleep(delay)
                continue
            failing_since = None
            self.backoff.failures = 0
            self.intake.rest_page(seq, page, first, until, limit)
            log.info("backfill_page", symbol=seq.symbol, first=first, until=until,
                     got=len(page), last_id=seq.last_id)  # fmt: skip

    def _give_up(self, seq: Sequencer, why: str) -> None:
        missing = seq.missing()
        if missing is None:
            return
        first, until = missing
        if until is None:  # an open-ended catch-up: we cannot know how many were missed
            seq.caught_up()
            self.intake.metrics.unfilled.labels(seq.symbol)  # make the series visible
            log.error("catch_up_abandoned", symbol=seq.symbol, first=first, why=why)
            return
        self.intake.skip(seq, until, why)
