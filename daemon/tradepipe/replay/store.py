"""What has been published so far, per symbol: the REST ``/api/v3/aggTrades`` view.

Rules:
1. Only published trades are here: REST never shows a trade before the stream has sent it, so
   a client that lost live trades in a disconnect fetches exactly those, as against Binance.
2. Per symbol, trades are appended in increasing aggregate id and non-decreasing time, so both
   ``fromId`` and ``startTime``/``endTime`` are binary searches.
3. At most ``history`` trades per symbol are kept (the oldest tenth is dropped when full), so a
   looped replay runs in bounded memory; REST then serves the most recent ``history`` trades.
4. Each trade is kept as its REST JSON text (``a,p,q,f,l,T,m,M``; no ``e``/``E``/``s``), built
   once at publication, so a page of 1000 is a join of ready bytes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field

DEFAULT_LIMIT = 500
MAX_LIMIT = 1000


@dataclass(slots=True)
class _Series:
    ids: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    texts: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Query:
    from_id: int | None = None
    start_time: int | None = None
    end_time: int | None = None
    limit: int = DEFAULT_LIMIT


class PublishedTrades:
    def __init__(self, history: int = 5_000_000) -> None:
        self._series: dict[str, _Series] = {}
        self.history = history
        self.count = 0  # published so far, including trades no longer kept

    def add_symbol(self, symbol: str) -> None:
        self._series.setdefault(symbol, _Series())

    def knows(self, symbol: str) -> bool:
        return symbol in self._series

    @property
    def symbols(self) -> list[str]:
        return sorted(self._series)

    def append(self, symbol: str, agg_id: int, time_ms: int, rest_text: bytes) -> None:
        series = self._series[symbol]
        if series.ids and agg_id <= series.ids[-1]:
            raise ValueError(f"{symbol}: aggregate id {agg_id} after {series.ids[-1]}")
        if len(series.ids) >= self.history:
            drop = max(1, self.history // 10)
            del series.ids[:drop], series.times[:drop], series.texts[:drop]
        series.ids.append(agg_id)
        series.times.append(time_ms)
        series.texts.append(rest_text)
        self.count += 1

    def count_of(self, symbol: str) -> int:
        """Trades of ``symbol`` currently kept (all published ones unless over ``history``)."""
        return len(self._series[symbol].ids)

    def last_id(self, symbol: str) -> int | None:
        ids = self._series[symbol].ids
        return ids[-1] if ids else None

    def select(self, symbol: str, query: Query, max_id: int | None = None) -> list[bytes]:
        """The REST objects a query returns, in id order (Binance's semantics):

        - ``fromId`` and/or ``startTime``: the first ``limit`` trades at or after them;
        - ``endTime`` bounds from above (inclusive); with only ``endTime``, the last ``limit``
          trades up to it;
        - none of the three: the most recent ``limit`` trades;
        - ``max_id`` (not a Binance parameter: the emulator's lagging REST view) hides every
          trade above it.
        """
        s = self._series[symbol]
        lo, hi = 0, len(s.ids)
        if query.from_id is not None:
            lo = max(lo, bisect_left(s.ids, query.from_id))
        if query.start_time is not None:
            lo = max(lo, bisect_left(s.times, query.start_time))
        if query.end_time is not None:
            hi = min(hi, bisect_right(s.times, query.end_time))
        if max_id is not None:
            hi = min(hi, bisect_right(s.ids, max_id))
        if lo >= hi:
            return []
        if query.from_id is None and query.start_time is None:
            return s.texts[max(lo, hi - query.limit) : hi]
        return s.texts[lo : min(hi, lo + query.limit)]
