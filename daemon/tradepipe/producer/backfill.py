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
   (REST trailing the stream) — is retried after a capped, jittered backoff (stamina, through
   :class:`tradepipe.retry.RetryForever`); 429/418 wait exactly the server's ``Retry-After``
   instead. Any page that moves the symbol on resets it.
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
from dataclasses import dataclass

import stamina
import structlog

from tradepipe.producer.intake import Intake
from tradepipe.producer.rest import AggTradesClient, RateLimited, RestError
from tradepipe.producer.sequencer import Sequencer
from tradepipe.retry import RetryForever

log = structlog.get_logger(__name__)

POLL_SECONDS = 1.0


class _FailedTry(Exception):
    """One failed try (rule 3): retried after the backoff, or exactly ``retry_after``."""

    def __init__(self, error: str, retry_after: float | None) -> None:
        super().__init__(error)
        self.error, self.retry_after = error, retry_after


class _GiveUp(Exception):
    """Rule 4's time is up for the range being fetched (``bounded``: it has an end): not
    retried."""

    def __init__(self, why: str, bounded: bool) -> None:
        super().__init__(why)
        self.bounded = bounded


def _wait(exc: Exception) -> bool | float:
    """stamina's backoff hook: a failed try waits the backoff, or the server's Retry-After."""
    if isinstance(exc, _FailedTry):
        return True if exc.retry_after is None else exc.retry_after
    return False


@dataclass(slots=True)
class _Failing:
    """Failed tries in a row since the last page that moved the symbol on (rule 4)."""

    since: float | None = None  # monotonic, the first of them
    answered: bool = True  # every one of them was an empty answer, no error


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
        self.retry = RetryForever(wait_initial=retry_base, wait_max=retry_cap)
        self._wake = {symbol: asyncio.Event() for symbol in intake.sequencers}
        self._tasks: asyncio.TaskGroup | None = None
        intake.on_added = self.add  # a symbol listed while running
        self.last_try_at: float | None = None  # monotonic, any REST attempt (progress)
        self.failing: dict[str, str] = {}  # symbol -> why its last try failed

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            for symbol, seq in list(self.intake.sequencers.items()):
                self._wake.setdefault(symbol, asyncio.Event())
                tasks.create_task(self._symbol(seq), name=f"backfill-{symbol}")

    def add(self, seq: Sequencer) -> None:
        """Fill ``seq`` too (a symbol added while running; before :meth:`run`, it finds it)."""
        if seq.symbol in self._wake:
            return
        self._wake[seq.symbol] = asyncio.Event()
        if self._tasks is not None:
            self._tasks.create_task(self._symbol(seq), name=f"backfill-{seq.symbol}")

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
        while seq.missing() is not None:
            failing = _Failing()
            try:
                async for attempt in self.retry.attempts(_wait):  # a new backoff per page
                    with attempt:
                        moved = await self._try(seq, failing, attempt)
            except _GiveUp as exc:  # rule 4
                if exc.bounded and failing.answered:
                    self.intake.set_aside(seq, f"not on the exchange: {exc}")
                else:
                    self._give_up(seq, str(exc))
                self.failing.pop(seq.symbol, None)
                continue
            if not moved:
                return

    async def _try(self, seq: Sequencer, failing: _Failing, attempt: stamina.Attempt) -> bool:
        """One page: True if it moved ``seq`` on, False if nothing is left to do now (rule 5,
        or the catch-up just ended); a failed try raises (rule 3) or gives up (rule 4)."""
        missing = seq.missing()
        if missing is None:
            return False
        first, until = missing
        limit = self.intake.page_limit()
        if until is not None:
            limit = min(limit, until - first + 1)
        await self.intake.wait_room(limit)
        token = self.intake.catch_up_token(seq)
        self.last_try_at = time.monotonic()
        retry_after: float | None = None
        try:
            page = await self.client.fetch(seq.symbol, first, limit)
        except RestError as exc:
            failing.answered = False
            error = str(exc)
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
        else:
            if self.intake.rest_page(seq, page, first, until, limit, token):
                self.failing.pop(seq.symbol, None)
                log.info("backfill_page", symbol=seq.symbol, first=first, until=until,
                         got=len(page), last_id=seq.last_id)  # fmt: skip
                return True
            if until is None:
                self.failing.pop(seq.symbol, None)
                return False  # rule 5 (or the catch-up just ended)
            error = f"REST has no trades from id {first} yet"
        # rule 3: a failed try
        now = time.monotonic()
        failing.since = failing.since if failing.since is not None else now
        self.failing[seq.symbol] = error
        if now - failing.since >= self.give_up_seconds:
            why = f"REST failing for {now - failing.since:.0f} s: {error}"
            raise _GiveUp(why, bounded=until is not None)
        delay = retry_after if retry_after is not None else attempt.next_wait
        log.warning("backfill_retry", symbol=seq.symbol, first=first, until=until,
                    error=error, retry_in=round(delay, 2))  # fmt: skip
        raise _FailedTry(error, retry_after)

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
