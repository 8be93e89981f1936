"""Per-(symbol, minute) aggregation of trades into mergeable partials.

Rules (the state this module keeps, and how it may be combined):

1. **Minute edges.** A trade belongs to the minute ``T // 60_000 * 60_000`` of its trade time
   ``T`` in UTC epoch milliseconds: ``HH:MM:59.999`` is in minute ``HH:MM``, ``HH:MM+1:00.000``
   in the next. Arrival time, event time ``E`` and file/object time never matter.
2. **What a partial records.** For one (symbol, minute): counts, exact ``Decimal`` sums of base
   quantity and quote amount (``p x q``) and of underlying trades (``l - f + 1``) per side;
   the lowest and highest aggregate id with their prices (open/close); high and low; and
   ``ids``, the exact set of aggregate ids it holds, as :class:`IdRanges`.
3. **Merging.** ``merge(agg(A), agg(B)) == agg(A | B)`` when ``A`` and ``B`` hold disjoint ids;
   merging overlapping partials raises, because their sums would double count.
4. **Idempotency.** A trade is identified by (symbol, ``a``). Within one batch, a repeated id is
   counted once (the first occurrence wins). Across batches, a later stage keeps the ``ids``
   of what it has stored and aggregates only trades whose id is not yet in them
   (``aggregate(trades, exclude=...)``), then merges: re-delivered or overlapping input
   therefore changes nothing, in any order.
5. **Late trades and closed minutes.** There is no cut-off here: a late trade simply forms a
   new partial for its minute and merges under rule 4. *When* a minute is considered closed
   (written out) is the shells' policy (the sink's grace period); correctness never depends on it.
6. **Exactness.** All arithmetic runs in a decimal context that traps any rounding; only
   ``avg_*`` is rounded, half-even to 8 places, and is ``None`` when its side is empty.
7. **Order flow.** A partial also carries ``flow`` (:mod:`tradepipe.core.flow`: the largest
   notional and the notional buckets per side), merged by the same rule 3; ``None`` means
   unknown (a row stored before those columns existed) and stays ``None`` through merges.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from tradepipe.core.flow import BOUNDS16, N_BUCKETS, OrderFlow
from tradepipe.core.idranges import IdRanges
from tradepipe.core.parse import Fields
from tradepipe.core.trade import Trade

MINUTE_MS = 60_000
ZERO = Decimal(0)
EIGHT_PLACES = Decimal("1e-8")
SIXTEEN_PLACES = Decimal("1e-16")
# Wide enough for any sum of Binance prices x quantities; any rounding is a bug and raises.
EXACT = decimal.Context(
    prec=120,
    rounding=ROUND_HALF_EVEN,
    traps=[decimal.Inexact, decimal.Rounded, decimal.InvalidOperation, decimal.Overflow],
)
_AVG = decimal.Context(prec=120, rounding=ROUND_HALF_EVEN, traps=[decimal.InvalidOperation])

MinuteKey = tuple[str, int]


def minute_of(time_ms: int) -> int:
    return time_ms - time_ms % MINUTE_MS


@dataclass(frozen=True, slots=True)
class MinutePartial:
    symbol: str
    minute_ms: int
    count_b: int
    count_s: int
    base_b: Decimal
    base_s: Decimal
    quote_b: Decimal
    quote_s: Decimal
    trades_b: int
    trades_s: int
    first_id: int
    open: Decimal
    last_id: int
    close: Decimal
    high: Decimal
    low: Decimal
    ids: IdRanges
    flow: OrderFlow | None = None

    @property
    def key(self) -> MinuteKey:
        return (self.symbol, self.minute_ms)

    def merge(self, other: MinutePartial) -> MinutePartial:
        """Combine two partials of the same minute holding disjoint trades (rule 3)."""
        if self.key != other.key:
            raise ValueError(f"cannot merge {self.key} with {other.key}")
        if not self.ids.isdisjoint(other.ids):
            raise ValueError(f"partials of {self.key} overlap: {self.ids} and {other.ids}")
        first = self if self.first_id < other.first_id else other
        last = self if self.last_id > other.last_id else other
        add = EXACT.add
        return MinutePartial(
            symbol=self.symbol,
            minute_ms=self.minute_ms,
            count_b=self.count_b + other.count_b,
            count_s=self.count_s + other.count_s,
            base_b=add(self.base_b, other.base_b),
            base_s=add(self.base_s, other.base_s),
            quote_b=add(self.quote_b, other.quote_b),
            quote_s=add(self.quote_s, other.quote_s),
            trades_b=self.trades_b + other.trades_b,
            trades_s=self.trades_s + other.trades_s,
            first_id=first.first_id,
            open=first.open,
            last_id=last.last_id,
            close=last.close,
            high=max(self.high, other.high),
            low=min(self.low, other.low),
            ids=self.ids.union(other.ids),
            flow=merge_flows(self.flow, other.flow),
        )


def merge_flows(a: OrderFlow | None, b: OrderFlow | None) -> OrderFlow | None:
    """Rule 7: counts and sums add, maxima take the larger; unknown stays unknown."""
    if a is None or b is None:
        return None
    add = EXACT.add
    return OrderFlow(
        max_b=max(a.max_b, b.max_b),
        max_s=max(a.max_s, b.max_s),
        counts_b=tuple(x + y for x, y in zip(a.counts_b, b.counts_b, strict=True)),
        counts_s=tuple(x + y for x, y in zip(a.counts_s, b.counts_s, strict=True)),
        usd_b=tuple(add(x, y) for x, y in zip(a.usd_b, b.usd_b, strict=True)),
        usd_s=tuple(add(x, y) for x, y in zip(a.usd_s, b.usd_s, strict=True)),
    )


# The bucket bounds, unpacked for the hot path (written for these five buckets: a change in
# their number fails here, at import).
_B1, _B2, _B3, _B4 = BOUNDS16
SCALE = 10**8  # prices and quantities are exact at 8 places: held as integers x 1e8


class _Acc:
    """Mutable per-minute accumulator: integers scaled by 1e8 (quote amounts by 1e16).

    Ids are kept as runs while they arrive in increasing order (the normal case: no per-id
    memory); the first id that arrives out of order switches the minute to an explicit set.
    ``fcount``/``fquote``: the notional buckets, buy side at ``0..N-1``, sell side at ``N..2N-1``;
    a side's count and quote amount are their sums (kept once, not twice, on the hot path).
    """

    __slots__ = (
        "base_b",
        "base_s",
        "close",
        "fcount",
        "first_id",
        "fmax_b",
        "fmax_s",
        "fquote",
        "high",
        "id_set",
        "last_id",
        "low",
        "open",
        "run_lo",
        "runs",
        "trades_b",
        "trades_s",
    )

    def __init__(self, agg_id: int, price: int) -> None:
        self.trades_b = self.trades_s = self.base_b = self.base_s = 0
        # last_id starts just below the first id so that the first trade extends the first run.
        self.first_id, self.last_id = agg_id, agg_id - 1
        self.open = self.close = self.high = self.low = price
        self.runs: list[tuple[int, int]] = []
        self.run_lo = agg_id
        self.id_set: set[int] | None = None
        self.fmax_b = self.fmax_s = 0
        self.fcount = [0] * (2 * N_BUCKETS)
        self.fquote = [0] * (2 * N_BUCKETS)

    def id_ranges(self) -> IdRanges:
        if self.id_set is not None:
            return IdRanges.from_ids(self.id_set)
        return IdRanges((*self.runs, (self.run_lo, self.last_id)))

    def switch_to_set(self) -> set[int]:
        self.id_set = set(self.id_ranges())
        return self.id_set


class Aggregator:
    """Aggregates one batch of trades, each (symbol, ``a``) counted once (rules 1, 2, 4).

    ``add`` takes a trade's fields with price and quantity as integers scaled by 1e8, so that
    both :func:`aggregate` (from :class:`Trade` values) and the streaming file reader's fast
    path feed the same exact integer arithmetic. ``exclude(key)`` may return ids already stored
    for a minute; those trades are skipped.
    """

    __slots__ = ("_accs", "_exclude", "_excluded", "_last")

    def __init__(self, exclude: Callable[[MinuteKey], IdRanges] | None = None) -> None:
        self._accs: dict[MinuteKey, _Acc] = {}
        self._exclude = exclude
        self._excluded: dict[MinuteKey, IdRanges] = {}
        # The minute of the previous trade: consecutive trades usually share it.
        self._last: tuple[str, int, _Acc] | None = None

    def add(  # noqa: C901 - the hot path, kept in one piece
        self, symbol: str, time_ms: int, a: int, p8: int, q8: int, n: int, sell: bool
    ) -> bool:
        """Add one trade; ``False`` if it was excluded or already counted in this batch."""
        last = self._last
        if last is not None and last[1] <= time_ms < last[1] + MINUTE_MS and last[0] == symbol:
            acc: _Acc | None = last[2]
            key = (symbol, last[1])
        else:
            key = (symbol, time_ms - time_ms % MINUTE_MS)
            acc = self._accs.get(key)
        if self._exclude is not None:
            skip = self._excluded.get(key)
            if skip is None:
                skip = self._excluded[key] = self._exclude(key)
            if a in skip:
                return False
        if acc is None:
            acc = self._accs[key] = _Acc(a, p8)
            self._last = (symbol, key[1], acc)
        elif a <= acc.last_id or acc.id_set is not None:
            ids = acc.id_set if acc.id_set is not None else acc.switch_to_set()
            if a in ids:
                return False  # the same trade again (rule 4)
            ids.add(a)
        elif a != acc.last_id + 1:  # in order, after a gap: close the current run
            acc.runs.append((acc.run_lo, acc.last_id))
            acc.run_lo = a
        if last is None or last[2] is not acc:
            self._last = (symbol, key[1], acc)
        pq = p8 * q8
        if pq < _B1:  # the notional bucket (core/flow.py rule 2); most trades are small
            bucket = 0
        elif pq < _B2:
            bucket = 1
        elif pq < _B3:
            bucket = 2
        else:
            bucket = 3 if pq < _B4 else 4
        if sell:
            acc.base_s += q8
            acc.trades_s += n
            bucket += N_BUCKETS
            if pq > acc.fmax_s:
                acc.fmax_s = pq
        else:
            acc.base_b += q8
            acc.trades_b += n
            if pq > acc.fmax_b:
                acc.fmax_b = pq
        acc.fcount[bucket] += 1
        acc.fquote[bucket] += pq
        if a <= acc.first_id:
            acc.first_id, acc.open = a, p8
        if a >= acc.last_id:
            acc.last_id, acc.close = a, p8
        if p8 > acc.high:
            acc.high = p8
        elif p8 < acc.low:
            acc.low = p8
        return True

    def add_trade(self, t: Trade) -> bool:
        return self.add(
            t.symbol,
            t.time_ms,
            t.agg_id,
            _units(t.price),
            _units(t.quantity),
            t.last_id - t.first_id + 1,
            t.buyer_is_maker,
        )

    def result(self) -> dict[MinuteKey, MinutePartial]:
        return {key: _freeze(key, acc) for key, acc in self._accs.items()}


def _units(value: Decimal) -> int:
    # Exact or raise (decimal.Inexact): a Trade built by hand with more than 8 places is a bug.
    return int(value.scaleb(8, EXACT).to_integral_exact(context=EXACT))


def trade_units(t: Trade) -> Fields:
    """A :class:`Trade` as the parser's ``Fields`` (amounts in exact 1e-8 units)."""
    return (t.symbol, t.agg_id, _units(t.price), _units(t.quantity), t.first_id, t.last_id,
            t.time_ms, t.buyer_is_maker)  # fmt: skip


def aggregate(
    trades: Iterable[Trade], exclude: Callable[[MinuteKey], IdRanges] | None = None
) -> dict[MinuteKey, MinutePartial]:
    """Aggregate trades into one partial per (symbol, minute), each trade counted once.

    ``exclude(key)`` may return the ids already stored for a minute; those trades are skipped
    (rule 4). Minutes left with no trades produce no partial.
    """
    agg = Aggregator(exclude)
    add = agg.add_trade
    for t in trades:
        add(t)
    return agg.result()


def _e8(value: int) -> Decimal:
    return Decimal(value).scaleb(-8, EXACT)


def _e16(value: int) -> Decimal:
    return Decimal(value).scaleb(-16, EXACT)


def _freeze(key: MinuteKey, acc: _Acc) -> MinutePartial:
    return MinutePartial(
        symbol=key[0],
        minute_ms=key[1],
        count_b=sum(acc.fcount[:N_BUCKETS]),
        count_s=sum(acc.fcount[N_BUCKETS:]),
        base_b=_e8(acc.base_b),
        base_s=_e8(acc.base_s),
        quote_b=_e16(sum(acc.fquote[:N_BUCKETS])),
        quote_s=_e16(sum(acc.fquote[N_BUCKETS:])),
        trades_b=acc.trades_b,
        trades_s=acc.trades_s,
        first_id=acc.first_id,
        open=_e8(acc.open),
        last_id=acc.last_id,
        close=_e8(acc.close),
        high=_e8(acc.high),
        low=_e8(acc.low),
        ids=acc.id_ranges(),
        flow=OrderFlow(
            max_b=_e16(acc.fmax_b),
            max_s=_e16(acc.fmax_s),
            counts_b=tuple(acc.fcount[:N_BUCKETS]),
            counts_s=tuple(acc.fcount[N_BUCKETS:]),
            usd_b=tuple(_e16(v) for v in acc.fquote[:N_BUCKETS]),
            usd_s=tuple(_e16(v) for v in acc.fquote[N_BUCKETS:]),
        ),
    )


def merge_all(
    into: dict[MinuteKey, MinutePartial], partials: Mapping[MinuteKey, MinutePartial]
) -> dict[MinuteKey, MinutePartial]:
    """Merge ``partials`` into ``into`` (in place, also returned); ids must be disjoint."""
    for key, part in partials.items():
        into[key] = into[key].merge(part) if key in into else part
    return into


def vwap(quote: Decimal, base: Decimal) -> Decimal | None:
    """Volume-weighted average price, half-even to 8 places; ``None`` for an empty side."""
    if not base:
        return None
    return _AVG.divide(quote, base).quantize(EIGHT_PLACES, context=_AVG)
