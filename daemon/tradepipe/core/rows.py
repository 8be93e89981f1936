"""The row contract: what ``aggregate`` prints and what table ``trade_minutes`` holds.

Columns, in order, are :data:`ROW_COLUMNS`. Decimal text is plain notation at a fixed scale:
8 places for prices, base quantities and averages, 16 for quote amounts (``p x q`` of two
8-place numbers is exact at 16). These are also the database's DECIMAL scales, so a row read
back from MySQL prints exactly as ``aggregate`` prints it.

The order-flow columns (:data:`tradepipe.core.flow.FLOW_COLUMNS`) follow the seed's: quote
amounts at 16 places, counts as integers; empty (NULL) in a row stored before they existed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

from tradepipe.core.aggregate import EIGHT_PLACES, EXACT, SIXTEEN_PLACES, MinutePartial, vwap
from tradepipe.core.flow import COUNT_COLUMNS, FLOW_COLUMNS, MAX_COLUMNS, USD_COLUMNS, OrderFlow

BASE_COLUMNS = (
    "symbol",
    "timestamp",
    "total_count_b",
    "total_count_s",
    "total_btc_b",
    "total_btc_s",
    "total_usd_b",
    "total_usd_s",
    "avg_b",
    "avg_s",
    "trades_b",
    "trades_s",
    "first_agg_id",
    "last_agg_id",
    "open",
    "high",
    "low",
    "close",
)
ROW_COLUMNS = (*BASE_COLUMNS, *FLOW_COLUMNS)
QUOTE_COLUMNS = frozenset({"total_usd_b", "total_usd_s", *MAX_COLUMNS, *USD_COLUMNS})
DECIMAL_COLUMNS = (
    frozenset({"total_btc_b", "total_btc_s", "avg_b", "avg_s", "open", "high", "low", "close"})
    | QUOTE_COLUMNS
)
INT_COLUMNS = frozenset(
    {"total_count_b", "total_count_s", "trades_b", "trades_s", "first_agg_id", "last_agg_id"}
    | set(COUNT_COLUMNS)
)
# Columns that may be NULL: an empty side's average; the order flow of a row from before it.
NULLABLE_COLUMNS = frozenset({"avg_b", "avg_s", *FLOW_COLUMNS})
_NO_FLOW: tuple[None, ...] = (None,) * len(FLOW_COLUMNS)


TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


def minute_text(minute_ms: int) -> str:
    """Epoch ms of a minute's start -> ``YYYY-MM-DD HH:MM:00`` (UTC)."""
    return dt.datetime.fromtimestamp(minute_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:00")


def minute_ms_of_text(text: str) -> int:
    """Inverse of :func:`minute_text`."""
    when = dt.datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)
    return int(when.timestamp()) * 1000


def timestamp_text(value: object) -> str:
    """A ``timestamp`` as a database returns it -> its contract text (the one converter of
    stored timestamps: the store's reads and writes and the dashboard use it).

    MySQL gives a naive ``datetime`` (UTC by contract), SQLite the text that was written.
    Anything else raises ``ValueError`` naming the value.
    """
    if isinstance(value, dt.datetime):
        return value.strftime(TIMESTAMP_FORMAT)
    if isinstance(value, str):
        return value
    raise ValueError(f"timestamp {value!r} is neither text nor a datetime")


def decimal_text(value: Decimal | None, column: str) -> str:
    """Plain-notation text at the column's fixed scale; ``""`` for ``None`` (an empty side)."""
    if value is None:
        return ""
    scale = SIXTEEN_PLACES if column in QUOTE_COLUMNS else EIGHT_PLACES
    return format(value.quantize(scale, context=EXACT), "f")


@dataclass(frozen=True, slots=True)
class Row:
    """One output row: the seed's columns as fields (:data:`BASE_COLUMNS`), then ``flow``
    (:data:`FLOW_COLUMNS`; ``None`` when unknown)."""

    symbol: str
    timestamp: str
    total_count_b: int
    total_count_s: int
    total_btc_b: Decimal
    total_btc_s: Decimal
    total_usd_b: Decimal
    total_usd_s: Decimal
    avg_b: Decimal | None
    avg_s: Decimal | None
    trades_b: int
    trades_s: int
    first_agg_id: int
    last_agg_id: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    flow: OrderFlow | None = None

    @classmethod
    def from_partial(cls, p: MinutePartial) -> Row:
        return cls(
            symbol=p.symbol,
            timestamp=minute_text(p.minute_ms),
            total_count_b=p.count_b,
            total_count_s=p.count_s,
            total_btc_b=p.base_b,
            total_btc_s=p.base_s,
            total_usd_b=p.quote_b,
            total_usd_s=p.quote_s,
            avg_b=vwap(p.quote_b, p.base_b),
            avg_s=vwap(p.quote_s, p.base_s),
            trades_b=p.trades_b,
            trades_s=p.trades_s,
            first_agg_id=p.first_id,
            last_agg_id=p.last_id,
            open=p.open,
            high=p.high,
            low=p.low,
            close=p.close,
            flow=p.flow,
        )

    def values(self) -> tuple[str | int | Decimal | None, ...]:
        """Every column's value, in :data:`ROW_COLUMNS` order."""
        base = tuple(getattr(self, column) for column in BASE_COLUMNS)
        if self.flow is None:
            return (*base, *_NO_FLOW)
        flow = self.flow.values()
        return (*base, *(flow[column] for column in FLOW_COLUMNS))

    def texts(self) -> tuple[str, ...]:
        """Every column as contract text, in :data:`ROW_COLUMNS` order."""
        out = []
        for column, value in zip(ROW_COLUMNS, self.values(), strict=True):
            if value is None:
                out.append("")
            elif isinstance(value, Decimal):  # the DECIMAL_COLUMNS
                out.append(decimal_text(value, column))
            else:
                out.append(str(value))
        return tuple(out)

    def as_dict(self) -> dict[str, str | int | None]:
        """JSON-ready: decimals as contract text, ints as ints, ``None`` for NULL (an empty
        side's average, unknown order flow)."""
        out: dict[str, str | int | None] = {}
        for column, text in zip(ROW_COLUMNS, self.texts(), strict=True):
            if not text and column in NULLABLE_COLUMNS:
                out[column] = None
            elif column in INT_COLUMNS:
                out[column] = int(text)
            else:
                out[column] = text
        return out


def rows_of(partials: Iterable[MinutePartial]) -> Iterator[Row]:
    """Rows ordered by symbol, then timestamp (the contract's order)."""
    for p in sorted(partials, key=lambda p: (p.symbol, p.minute_ms)):
        yield Row.from_partial(p)
