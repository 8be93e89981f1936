"""One verify run: check a range of minutes against the exchange, optionally repair, record.

Rules:

1. **Range.** Per symbol (``--symbol``, else every symbol with rows), from ``since`` (else its
   oldest stored minute) to ``until`` (else the newest minute that is both closed more than
   :data:`SETTLE_MINUTES` minutes ago by the clock and that many minutes older than the
   symbol's newest row: the newest rows may still be receiving trades, in production and in a
   replay running on recorded time). Work goes in windows of :data:`WINDOW_MINUTES` (one klines
   request); the last row of a window carries into the next, so continuity spans them.
2. **Check** (:func:`tradepipe.core.checks.classify`): stored rows, the exchange's klines, a
   status per minute.
3. **Repair** (``repair=True``), then check again (rule 2) and record only the second verdict:
   - a ``hole``: exactly its missing ids (``fromId``), through the upsert (``Store.upsert``,
     the Lambda's code path: the id ledger skips anything already counted);
   - a ``missing`` minute no hole bounds: the minute's trades by time, through the upsert;
   - a ``mismatch`` with no id missing: the row is rebuilt from the exchange's trades of that
     minute (:func:`tradepipe.store.checks.replace_minutes`);
   a second round handles what the first uncovered (a hole filled in a row that was also
   altered). A repair never double-counts: the upsert merges only ids not in the ledger, and a
   rebuilt row holds exactly the exchange's trades.
4. **Record.** Every verdict of the window is written to ``minute_checks`` (one transaction)
   before the next window starts, so an interrupted run keeps what it proved.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from tradepipe.core import MINUTE_MS, MinutePartial, aggregate, minute_of, minute_text
from tradepipe.core.checks import Hole, MinuteCheck, Status, classify
from tradepipe.store import Store
from tradepipe.store.checks import (
    fetch_range,
    replace_minutes,
    stored_span,
    stored_symbols,
    write_checks,
)
from tradepipe.verify.exchange import Exchange

log = structlog.get_logger("tradepipe.verify")

T = TypeVar("T")
SETTLE_MINUTES = 2
WINDOW_MINUTES = 1000
REPAIR_ROUNDS = 2


@dataclass(frozen=True, slots=True)
class Request:
    symbols: Sequence[str] = ()  # empty: every stored symbol
    since_ms: int | None = None
    until_ms: int | None = None
    repair: bool = False


@dataclass
class Report:
    checks: list[MinuteCheck] = field(default_factory=list)
    minutes_repaired: int = 0  # minutes not exact before the repair and exact after it
    trades_repaired: int = 0  # trades added by the upsert (new to the ledger) or in rebuilt rows
    rows_rebuilt: int = 0
    symbols: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(check.status.value for check in self.checks)
        return {s.value: c.get(s.value, 0) for s in Status}

    @property
    def all_exact(self) -> bool:
        return all(c.status is Status.EXACT for c in self.checks)

    def summary(self) -> str:
        counts = self.counts()
        parts = [f"{counts[s.value]} {s.value}" for s in Status]
        line = f"verify: {len(self.checks)} minutes of {len(self.symbols)} symbols: " + ", ".join(
            parts
        )
        if self.minutes_repaired or self.trades_repaired or self.rows_rebuilt:
            line += (
                f"; repaired {self.minutes_repaired} minutes ({self.trades_repaired} trades, "
                f"{self.rows_rebuilt} rows rebuilt)"
            )
        return line


def default_until(now_s: float, newest_ms: int) -> int:
    """Rule 1's end of the range for a symbol whose newest row is ``newest_ms``."""
    closed = minute_of(int(now_s * 1000)) - (SETTLE_MINUTES + 1) * MINUTE_MS
    return min(closed, newest_ms - SETTLE_MINUTES * MINUTE_MS)


class Verifier:
    """Rules 1-4 over one store and one exchange."""

    def __init__(
        self, store: Store, exchange: Exchange, clock: Callable[[], float] = time.time
    ) -> None:
        self.store, self.exchange, self.clock = store, exchange, clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tradepipe-verify")

    async def _thread(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` in the store's one thread (a SQLite connection belongs to its thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _db(self, fn: Callable[..., T], *args: object) -> T:
        def call() -> T:
            return fn(self.store.connection(), *args)

        return await self._thread(call)

    async def close(self) -> None:
        """Close the store's connection in its thread, then end the thread."""
        await self._thread(self.store.close)
        self._executor.shutdown(wait=False)

    async def run(self, req: Request) -> Report:
        report = Report()
        symbols = list(dict.fromkeys(s.upper() for s in req.symbols))
        symbols = symbols or await self._db(stored_symbols)
        report.symbols = list(symbols)
        for symbol in symbols:
            span = await self._db(stored_span, symbol)
            first, last = req.since_ms, req.until_ms
            if span is not None:
                first = span[0] if first is None else first
                last = default_until(self.clock(), span[1]) if last is None else last
            if first is None or last is None:
                log.warning("verify_no_rows", symbol=symbol)
                continue
            carry: MinutePartial | None = None
            start = minute_of(first)
            while start <= last:
                end = min(last, start + (WINDOW_MINUTES - 1) * MINUTE_MS)
                carry = await self._window(symbol, start, end, carry, req.repair, report)
                start = end + MINUTE_MS
        return report

    async def _check(
        self, symbol: str, start: int, end: int, carry: MinutePartial | None
    ) -> tuple[list[MinuteCheck], dict[int, MinutePartial]]:
        rows = await self._db(fetch_range, symbol, start, end)
        klines = await self.exchange.klines(symbol, start, end)
        context = dict(rows)
        if carry is not None:
            context[carry.minute_ms] = carry
        minutes = range(start, end + 1, MINUTE_MS)
        return classify(symbol, minutes, context, klines), rows

    async def _window(
        self,
        symbol: str,
        start: int,
        end: int,
        carry: MinutePartial | None,
        repair: bool,
        report: Report,
    ) -> MinutePartial | None:
        checks, rows = await self._check(symbol, start, end, carry)
        before = {c.minute_ms: c.status for c in checks}
        for _ in range(REPAIR_ROUNDS if repair else 0):
            if all(c.status is Status.EXACT for c in checks):
                break
            await self._repair(symbol, checks, report)
            checks, rows = await self._check(symbol, start, end, carry)
        report.minutes_repaired += sum(
            1 for c in checks if c.status is Status.EXACT and before[c.minute_ms] != Status.EXACT
        )
        await self._db(write_checks, checks, dt.datetime.fromtimestamp(self.clock(), dt.UTC))
        for c in checks:
            if c.status is not Status.EXACT:
                log.error("minute_not_proven", symbol=symbol, minute=c.minute,
                          status=c.status.value, detail=c.describe())  # fmt: skip
        report.checks.extend(checks)
        return rows[max(rows)] if rows else carry

    async def _repair(self, symbol: str, checks: list[MinuteCheck], report: Report) -> None:
        holes: dict[tuple[int, int], Hole] = {}
        by_time: list[int] = []
        rebuild: list[int] = []
        for c in checks:
            for h in c.holes:
                holes[(h.first, h.last)] = h
            if c.status is Status.MISSING and not c.holes:
                by_time.append(c.minute_ms)
            elif c.status is Status.MISMATCH:
                rebuild.append(c.minute_ms)
        for first, last in sorted(holes):
            trades = await self.exchange.trades_by_id(symbol, first, last)
            added = await self._thread(self.store.upsert, trades) if trades else None
            n = added.added if added is not None else 0
            report.trades_repaired += n
            log.info("verify_hole_filled", symbol=symbol, ids=f"{first}-{last}",
                     fetched=len(trades), added=n)  # fmt: skip
        for minute_ms in by_time:
            trades = await self.exchange.trades_of_minute(symbol, minute_ms)
            added = await self._thread(self.store.upsert, trades) if trades else None
            n = added.added if added is not None else 0
            report.trades_repaired += n
            log.info("verify_minute_filled", symbol=symbol, minute=minute_text(minute_ms),
                     fetched=len(trades), added=n)  # fmt: skip
        for minute_ms in rebuild:
            trades = await self.exchange.trades_of_minute(symbol, minute_ms)
            rebuilt = {key[1]: p for key, p in aggregate(trades).items()}
            changed = await self._db(replace_minutes, symbol, [minute_ms], rebuilt)
            report.rows_rebuilt += changed
            report.trades_repaired += len(trades) if changed else 0
            log.info("verify_minute_rebuilt", symbol=symbol, minute=minute_text(minute_ms),
                     trades=len(trades), changed=changed)  # fmt: skip
