"""Table ``trade_minutes``: its columns, and conversions between stored rows and the core's
:class:`MinutePartial` / :class:`Row`.

A stored row holds everything a partial does (sums, counts, open/close with their aggregate
ids, high/low, and ``agg_ids``), so :func:`partial_of` rebuilds the exact partial that was
written, and merging it with new trades' partial equals aggregating them all at once. A row
written before the order-flow columns existed has them NULL: its partial's ``flow`` is ``None``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradepipe.core import (
    ROW_COLUMNS,
    IdRanges,
    MinuteKey,
    MinutePartial,
    OrderFlow,
    Row,
    minute_text,
)
from tradepipe.core.rows import minute_ms_of_text, timestamp_text
from tradepipe.store.connection import Connection

TABLE = "trade_minutes"
STORED_COLUMNS = (*ROW_COLUMNS, "agg_ids")


def minute_ms_of(value: Any) -> int:
    """A stored ``timestamp`` (MySQL ``datetime``, SQLite text) -> epoch ms, UTC."""
    return minute_ms_of_text(timestamp_text(value))


def columns_sql(conn: Connection, columns: Sequence[str] = STORED_COLUMNS) -> str:
    return ", ".join(conn.quote(c) for c in columns)


def values_of(partial: MinutePartial) -> tuple[Any, ...]:
    """Parameters for one row, in :data:`STORED_COLUMNS` order.

    Decimals go as the contract's fixed-scale text: MySQL parses it exactly into DECIMAL,
    SQLite keeps it as is. An empty side's average, and unknown order flow, are NULL.
    """
    row = Row.from_partial(partial)
    out: list[Any] = []
    for text, value in zip(row.texts(), row.values(), strict=True):
        if isinstance(value, int) or value is None:
            out.append(value)
        else:
            out.append(text)
    out.append(str(partial.ids))
    return tuple(out)


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def partial_of(stored: Sequence[Any]) -> MinutePartial:
    """A stored row (:data:`STORED_COLUMNS` order) -> the partial it was written from."""
    r = dict(zip(STORED_COLUMNS, stored, strict=True))
    return MinutePartial(
        symbol=str(r["symbol"]),
        minute_ms=minute_ms_of(r["timestamp"]),
        count_b=int(r["total_count_b"]),
        count_s=int(r["total_count_s"]),
        base_b=_dec(r["total_btc_b"]),
        base_s=_dec(r["total_btc_s"]),
        quote_b=_dec(r["total_usd_b"]),
        quote_s=_dec(r["total_usd_s"]),
        trades_b=int(r["trades_b"]),
        trades_s=int(r["trades_s"]),
        first_id=int(r["first_agg_id"]),
        open=_dec(r["open"]),
        last_id=int(r["last_agg_id"]),
        close=_dec(r["close"]),
        high=_dec(r["high"]),
        low=_dec(r["low"]),
        ids=IdRanges.parse(str(r["agg_ids"])),
        flow=OrderFlow.of_values(r),
    )


def fetch_partials(
    conn: Connection, keys: Sequence[MinuteKey], *, lock: bool
) -> dict[MinuteKey, MinutePartial]:
    """The stored partials of ``keys`` (absent ones are simply missing from the result).

    ``lock=True`` on MySQL adds ``FOR UPDATE``: the rows (and, for absent keys, the gaps) stay
    locked until the transaction ends. On SQLite the caller already holds the write lock.

    One query per symbol (its minutes listed), or per minute (its symbols listed) when the
    keys have fewer minutes than symbols: a per-minute object of 2,900 symbols is one round
    trip, not 2,900 (measured: bench/lambda.py --symbols 2900).
    """
    out: dict[MinuteKey, MinutePartial] = {}
    minutes_of: dict[str, list[str]] = {}  # symbol -> its minutes
    symbols_of: dict[str, list[str]] = {}  # minute -> its symbols
    for symbol, minute_ms in keys:
        minute = minute_text(minute_ms)
        minutes_of.setdefault(symbol, []).append(minute)
        symbols_of.setdefault(minute, []).append(symbol)
    ts = conn.quote("timestamp")
    fixed, listed, groups = ("symbol", ts, minutes_of)
    if len(symbols_of) < len(minutes_of):
        fixed, listed, groups = (ts, "symbol", symbols_of)
    suffix = " FOR UPDATE" if lock and conn.dialect == "mysql" else ""
    for value, items in sorted(groups.items()):
        items.sort()
        for i in range(0, len(items), 500):
            chunk = items[i : i + 500]
            marks = ", ".join([conn.ph] * len(chunk))
            rows = conn.query(
                f"SELECT {columns_sql(conn)} FROM {TABLE} "
                f"WHERE {fixed} = {conn.ph} AND {listed} IN ({marks}){suffix}",
                (value, *chunk),
            )
            for stored in rows:
                partial = partial_of(stored)
                out[partial.key] = partial
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return timestamp_text(value)
    return str(value)


def fetch_texts(conn: Connection, symbol: str | None = None) -> list[tuple[str, ...]]:
    """Stored rows exactly as stored, as contract text (:data:`ROW_COLUMNS`, the order and
    format of ``Row.texts()`` and of ``tradepipe aggregate``), ordered by symbol, timestamp."""
    where, params = ("", ()) if symbol is None else (f" WHERE symbol = {conn.ph}", (symbol,))
    stored = conn.query(
        f"SELECT {columns_sql(conn, ROW_COLUMNS)} FROM {TABLE}{where} "
        f"ORDER BY symbol, {conn.quote('timestamp')}",
        params,
    )
    return [tuple(_text(v) for v in s) for s in stored]
