"""The tape: every recorded trade the emulator will publish, in publication order.

Rules:
1. Trades from all input files (NDJSON raw or combined-wrapper, data-dump CSV, ``.gz`` or not)
   form one tape, ordered by trade time ``T``, then symbol, then aggregate id. Publication
   follows this order, so per symbol the ids come out increasing as on the real stream.
2. A trade seen twice (same symbol and aggregate id, e.g. in overlapping files) is on the tape
   once; the first occurrence wins and the duplicate is counted.
3. Per symbol, aggregate ids must increase with trade time (they do on Binance); data where an
   id goes backwards in time cannot be served as a stream and is refused as a whole.
4. Bad lines are reported (``FILE:LINE: rejected: reason: ...``) and skipped; an unreadable or
   truncated file is a :class:`~tradepipe.core.SourceError` (nothing sensible can be served).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tradepipe.core import Rejected, SourceError, Trade, decompress, iter_trades


@dataclass(frozen=True, slots=True)
class Tape:
    trades: Sequence[Trade]
    rejected: int = 0
    duplicates: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        return sorted({t.symbol for t in self.trades})

    @property
    def first_time_ms(self) -> int:
        return self.trades[0].time_ms if self.trades else 0

    @property
    def last_time_ms(self) -> int:
        return self.trades[-1].time_ms if self.trades else 0

    def id_span(self, symbol: str) -> tuple[int, int]:
        """Lowest and highest aggregate id of ``symbol`` on the tape."""
        ids = [t.agg_id for t in self.trades if t.symbol == symbol]
        return min(ids), max(ids)


def tape_of(
    trades: Iterable[Trade], rejected: int = 0, by_reason: dict[str, int] | None = None
) -> Tape:
    """Order and de-duplicate ``trades`` into a tape (rules 1 to 3)."""
    seen: set[tuple[str, int]] = set()
    unique: list[Trade] = []
    duplicates = 0
    for trade in trades:
        key = (trade.symbol, trade.agg_id)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        unique.append(trade)
    unique.sort(key=lambda t: (t.time_ms, t.symbol, t.agg_id))
    last: dict[str, Trade] = {}
    for trade in unique:
        before = last.get(trade.symbol)
        if before is not None and trade.agg_id < before.agg_id:
            raise SourceError(
                f"{trade.symbol}: aggregate id {trade.agg_id} (T={trade.time_ms}) comes after "
                f"id {before.agg_id} (T={before.time_ms}): ids go backwards in time (rule 3)"
            )
        last[trade.symbol] = trade
    return Tape(unique, rejected, duplicates, dict(by_reason or {}))


def load_tape(
    files: Iterable[str],
    symbol: str | None = None,
    report: Callable[[str], None] | None = None,
) -> Tape:
    """Read ``files`` into a tape; each rejected line is passed to ``report`` (rule 4)."""
    trades: list[Trade] = []
    by_reason: dict[str, int] = {}
    rejected = 0
    for name in files:
        for item in _read(name, symbol):
            if isinstance(item, Trade):
                trades.append(item)
                continue
            rejected += 1
            by_reason[item.error.reason] = by_reason.get(item.error.reason, 0) + 1
            if report is not None:
                report(_describe(item))
    return tape_of(trades, rejected, by_reason)


def _read(name: str, symbol: str | None) -> list[Trade | Rejected]:
    """The whole file, parsed. (The tape needs it all in memory anyway; reading it in one go
    also sidesteps ``core.read_file`` leaving a gzip file's underlying handle open.)"""
    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise SourceError(f"{name}: cannot read: {exc.strerror or exc}") from None
    return list(iter_trades(decompress(data, name), name, symbol))


def _describe(item: Rejected) -> str:
    return f"{item.source}:{item.lineno}: rejected: {item.error}"
