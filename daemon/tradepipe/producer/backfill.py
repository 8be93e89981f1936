"""Fills missing aggregate-id ranges from REST, page by page, in order; one task per symbol.

Rules:
1. Each symbol has its own task, woken when its sequencer reports something missing (a jump in
   ids, a drop, trades refused for room, a connection's first message) and every second
   anyway; one symbol waiting (for room, for a retry, for REST) never holds up another. The
   REST client paces all of them within one weight budget.
2. A page asks ``fromId = last_id + 1`` for at most :meth:`Intake.page_limit` ids (and no more
   than a bounded range needs), and only once that many records fit in the memory bound.
3. Every failed try — a network error, a timeout, any HTTP error status (403 from Binance's
   WAF, 5xx, 451, 4xx), an answer that is not a JSON array, an empty page for a bounded range
   (REST trailing the stream) — is retried after a capped, jittered backoff; 429/418 wait
   exactly the server's ``Retry-After`` instead. Any page that moves the symbol on resets it.
4. A range is given up only after ``give_up_seconds`` of failed tries in a row, and never
   silently: a bounded range is skipped with its ids logged at error level and counted in
   ``tradepipe_gap_unfilled_trades_total``; an open-ended catch-up (how many were missed is
   unknown) is logged at error level and counted in ``tradepipe_catch_ups_abandoned_total``,
   and the next live trade shows the gap as a bounded range, which is tried again.
   Except: when every try of a bounded range was *answered* and showed nothing from its first
   id (no error, only empty answers), the exchange does not know the held trades that bound it
   (an absurd id, a foreign message): they are set aside into the quarantine instead
   (sequencer rule 8, ``tradepipe_trades_quarantined_total{reason="not_on_exchange"}``) and a
   catch-up brings back any that were real; nothing is skipped.
5. An open-ended catch-up that REST answers with nothing newer, while it may not end yet (no
   connection delivering since the drop: intake rule 1), waits for the next wake-up or second;
   that is not a failure: REST simply has nothing newer yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from tradepipe.producer.backoff import Backoff
from tradepipe.producer.intake import Intake
from tradepipe.producer.rest import AggTradesClient, RateLimited, RestError
from tradepipe.producer.sequencer import Sequencer

log = structlog.get_logger(__name__)

POLL_SECONDS = 1.0


class Backfiller:
    def __init__(
        self,
        intake: Intake,
        client: AggTradesClient,
        give_up_seconds: float = 300.0,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
    ) -> None:
        self.intake, self.client = intake, client
        self.give_up_seconds = give_up_seconds
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self._wake = {symbol: asyncio.Event() for symbol in intake.sequencers}
        self.last_try_at: float | None = None  # monotonic, any REST attempt (progress)
        self.failing: dict[str, str] = {}  # symbol -> why its last try failed

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            for symbol, seq in self.intake.sequencers.items():
                tasks.create_task(self._symbol(seq), name=f"backfill-{symbol}")

    async def _symbol(self, seq: Sequencer) -> None:
        wake = self._wake[seq.symbol]
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await wake.wait()
            wake.clear()
            await self.fill(seq)

    async def fill(self, seq: Sequencer) -> None:
        """Fetch until ``seq`` misses nothing, or an open-ended catch-up must wait (rule 5)."""
        failing_since: float | None = None
        answered = True  # every failed try since failing_since was an empty answer (rule 4)
        backoff = Backoff(base=self.retry_base, cap=self.retry_cap, healthy_after=0.0)
        while (missing := seq.missing()) is not None:
            first, until = missing
            limit = self.intake.page_limit()
            if until is not None:
                limit = min(limit, until - first + 1)
            await self.intake.wait_room(limit)
            token = self.intake.catch_up_token(seq)
            self.last_try_at = time.monotonic()
            try:
                page = await self.client.fetch(seq.symbol, first, limit)
            except RestError as exc:
                answered = False
                error = str(exc)
                retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            else:
                if self.intake.rest_page(seq, page, first, until, limit, token):
                    failing_since, answered = None, True
                    backoff.succeeded()
                    self.failing.pop(seq.symbol, None)
                    log.info("backfill_page", symbol=seq.symbol, first=first, until=until,
                             got=len(page), last_id=seq.last_id)  # fmt: skip
                    continue
                if until is None:
                    self.failing.pop(seq.symbol, None)
                    return  # rule 5 (or the catch-up just ended)
                error, retry_after = f"REST has no trades from id {first} yet", None
            # rule 3: a failed try
            now = time.monotonic()
            failing_since = failing_since if failing_since is not None else now
            self.failing[seq.symbol] = error
            if now - failing_since >= self.give_up_seconds:
                why = f"REST failing for {now - failing_since:.0f} s: {error}"
                if until is not None and answered:
                    self.intake.set_aside(seq, f"not on the exchange: {why}")
                else:
                    self._give_up(seq, why)
                failing_since, answered = None, True
                self.failing.pop(seq.symbol, None)
                continue
            backoff.failed()
            delay = retry_after if retry_after is not None else backoff.delay()
            log.warning("backfill_retry", symbol=seq.symbol, first=first, until=until,
                        error=error, retry_in=round(delay, 2))  # fmt: skip
            await asyncio.sleep(delay)

    def _give_up(self, seq: Sequencer, why: str) -> None:
        """Rule 4: never silent."""
        missing = seq.missing()
        if missing is None:
            return
        first, until = missing
        if until is None:
            seq.caught_up()
            self.intake.metrics.unfilled.labels(seq.symbol)  # make the series visible
            self.intake.metrics.abandoned.labels(seq.symbol).inc()
            log.error("catch_up_abandoned", symbol=seq.symbol, first=first, why=why)
            return
        self.intake.skip(seq, until, why)
