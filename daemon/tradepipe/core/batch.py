"""A batch of validated trades as the bulk paths hold it: the parser's :data:`Fields`.

An object of the per-minute layout holds ~100,000 trades of thousands of symbols. Building a
:class:`~tradepipe.core.trade.Trade` per line turns each amount from 1e-8 units into a
``Decimal``, and aggregating turns it back: measured on such an object (bench/lambda.py
``--symbols 2900``), that round trip was a third of the parse-and-aggregate time. A
:class:`TradeBatch` keeps what :func:`~tradepipe.core.parse.check` returns -- the same rules,
the same values -- and aggregates it with the one :class:`~tradepipe.core.aggregate.Aggregator`
``add``, as ``tradepipe aggregate`` does. Trades that are already values (the load command,
local mode) come in through :meth:`TradeBatch.of_trades`, converted exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator

from tradepipe.core.aggregate import (
    Aggregator,
    MinuteKey,
    MinutePartial,
    minute_of,
    trade_units,
)
from tradepipe.core.idranges import IdRanges
from tradepipe.core.parse import Fields, to_trade
from tradepipe.core.sources import Rejected, iter_fields
from tradepipe.core.trade import Trade


class TradeBatch:
    """Validated trades in arrival order, as ``(s, a, p8, q8, f, l, T, m)`` tuples."""

    __slots__ = ("fields",)

    def __init__(self, fields: list[Fields] | None = None) -> None:
        self.fields: list[Fields] = [] if fields is None else fields

    @classmethod
    def of_trades(cls, trades: Iterable[Trade]) -> TradeBatch:
        return cls([trade_units(t) for t in trades])

    def __len__(self) -> int:
        return len(self.fields)

    def trades(self) -> Iterator[Trade]:
        """The same trades as :class:`Trade` values (tests, the rare caller that needs them)."""
        return (to_trade(f) for f in self.fields)

    def keys(self) -> list[MinuteKey]:
        """The (symbol, minute) rows the batch touches, sorted (the order rows are locked in)."""
        return sorted({(f[0], minute_of(f[6])) for f in self.fields})

    def only(self, keys: Collection[MinuteKey]) -> TradeBatch:
        """The trades of these (symbol, minute) rows."""
        return TradeBatch([f for f in self.fields if (f[0], minute_of(f[6])) in keys])

    def extend(self, other: TradeBatch) -> None:
        self.fields.extend(other.fields)

    def aggregate(
        self, exclude: Callable[[MinuteKey], IdRanges] | None = None
    ) -> dict[MinuteKey, MinutePartial]:
        """:func:`tradepipe.core.aggregate.aggregate` of these trades (same rules, same result)."""
        agg = Aggregator(exclude)
        add = agg.add
        for s, a, p8, q8, f, l_, t, m in self.fields:
            add(s, t, a, p8, q8, l_ - f + 1, m)
        return agg.result()


def read_batch(
    data: bytes | Iterable[bytes],
    source: str,
    symbol: str | None = None,
    now_ms: int | None = None,
) -> tuple[TradeBatch, list[Rejected]]:
    """:func:`~tradepipe.core.sources.iter_fields` of a body: its good lines as a batch, and
    its rejects."""
    fields: list[Fields] = []
    rejected: list[Rejected] = []
    keep, reject = fields.append, rejected.append
    for item in iter_fields(data, source, symbol, now_ms):
        if type(item) is tuple:
            keep(item)
        else:
            reject(item)  # type: ignore[arg-type]
    return TradeBatch(fields), rejected
