"""Derived order-flow series, computed in SQL at query time (never stored).

Per minute of one symbol, over a range ``start <= timestamp <= end`` (the dashboard's inclusive
minutes), in timestamp order:

- ``delta_base`` = ``total_btc_b - total_btc_s``; ``delta_quote`` = ``total_usd_b - total_usd_s``;
- ``cvd_day_base``/``cvd_day_quote``: the running sum of the delta since 00:00 UTC of the
  minute's day, *including* minutes of that day before ``start`` (the window runs over the
  whole day, then the range is cut);
- ``cvd_range_base``/``cvd_range_quote``: the running sum from ``start``;
- ``imbalance`` = ``(total_usd_b - total_usd_s) / (total_usd_b + total_usd_s)`` in [-1, 1]
  (quote volume; NULL for a minute without volume);
- ``whale_share`` = the >= 100k buckets' share of the minute's quote volume
  (``usd_100k_1m_* + usd_ge1m_*`` over ``total_usd_b + total_usd_s``; NULL when the order-flow
  columns are NULL, a row from before migration 0003);
- ``ret`` = ``close / open - 1``, the minute's return from its own OHLC;
- and, unchanged, ``close``, ``avg_b`` and ``avg_s`` (what the analysis panel also needs).

Rules:

1. **Sums are exact.** Deltas and CVDs are exact decimal text (8 places base, 16 quote). MySQL
   sums ``DECIMAL`` exactly with ``SUM() OVER``; SQLite has no decimal type (its arithmetic on
   the stored text is binary floating point), so on SQLite the same SQL calls ``dec_sub`` and
   the window aggregate ``dec_sum``, registered on the connection from Python's ``Decimal``
   (:func:`prepare`): one query, the same window, exact on both.
2. **Ratios are numbers.** ``imbalance``, ``whale_share`` and ``ret`` are dimensionless: they
   leave as floats (JSON numbers), computed in SQL (MySQL's ``DECIMAL`` division at 30+
   places, SQLite's ``REAL``); ``None`` where the denominator is zero or a column is NULL.
3. Window functions need MariaDB >= 10.2 and SQLite >= 3.25 (both older than anything we run).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from tradepipe.core.aggregate import EXACT
from tradepipe.core.flow import WHALE_BUCKETS
from tradepipe.core.rows import timestamp_text
from tradepipe.store.connection import Connection
from tradepipe.store.minutes import TABLE

EXACT_SERIES = (
    "delta_base",
    "delta_quote",
    "cvd_day_base",
    "cvd_day_quote",
    "cvd_range_base",
    "cvd_range_quote",
)
RATIO_SERIES = ("imbalance", "whale_share", "ret")
SERIES = (*EXACT_SERIES, *RATIO_SERIES)
# Passed through for the analysis panel (one query gives it everything it needs).
PASSED = ("close", "avg_b", "avg_s")
EIGHT = Decimal("1e-8")
_PLACES = {
    name: Decimal("1e-16") if name.endswith("quote") else Decimal("1e-8") for name in EXACT_SERIES
}
# The >= 100k buckets, from the one place the bounds live (core/flow.py).
_WHALE = tuple(f"usd_{bucket}_{side}" for bucket in WHALE_BUCKETS for side in "bs")


def _dec(text: object) -> Decimal:
    return text if isinstance(text, Decimal) else Decimal(str(text))


def _dec_sub(a: object, b: object) -> str | None:
    if a is None or b is None:
        return None
    return format(EXACT.subtract(_dec(a), _dec(b)), "f")


class _DecSum:
    """``dec_sum(x)``: an exact sum as a window aggregate (sqlite3 ``create_window_function``)."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: object) -> None:
        if value is not None:
            self.total = EXACT.add(self.total, _dec(value))

    def inverse(self, value: object) -> None:
        if value is not None:
            self.total = EXACT.subtract(self.total, _dec(value))

    def value(self) -> str:
        return format(self.total, "f")

    def finalize(self) -> str:
        return self.value()


def prepare(conn: Connection) -> None:
    """Rule 1: on SQLite, register ``dec_sub`` and ``dec_sum`` (cheap; idempotent)."""
    raw = conn.raw
    if isinstance(raw, sqlite3.Connection):
        raw.create_function("dec_sub", 2, _dec_sub, deterministic=True)
        raw.create_window_function("dec_sum", 1, _DecSum)


def series_sql(conn: Connection) -> str:
    """Parameters: symbol, the start's day (``YYYY-MM-DD 00:00:00``), start, end."""
    q, ph = conn.quote, conn.ph
    ts = q("timestamp")
    if conn.dialect == "sqlite":
        sub = "dec_sub({}, {})".format
        total = "dec_sum"
        num = "(1.0 * {})".format  # text -> REAL for the ratios (rule 2)
    else:
        sub = "({} - {})".format
        total = "SUM"
        # DECIMAL division keeps the dividend's scale + 4: widen it, or a return of 2e-5
        # would keep 7 digits (rule 2; values beyond 35 integer digits are not plotted ones)
        num = "CAST({} AS DECIMAL(65,30))".format
    d_base = sub(q("total_btc_b"), q("total_btc_s"))
    d_quote = sub(q("total_usd_b"), q("total_usd_s"))
    volume = f"({num(q('total_usd_b'))} + {num(q('total_usd_s'))})"
    whale = " + ".join(num(q(c)) for c in _WHALE)
    day = f"PARTITION BY DATE({ts}) ORDER BY {ts}"
    inner = (
        f"SELECT {ts} AS ts, {d_base} AS delta_base, {d_quote} AS delta_quote, "
        f"{total}({d_base}) OVER ({day}) AS cvd_day_base, "
        f"{total}({d_quote}) OVER ({day}) AS cvd_day_quote, "
        f"({num(q('total_usd_b'))} - {num(q('total_usd_s'))}) / NULLIF({volume}, 0) AS imbalance, "
        f"({whale}) / NULLIF({volume}, 0) AS whale_share, "
        f"{num(q('close'))} / {num(q('open'))} - 1 AS ret, "
        f"{q('close')} AS close_, {q('avg_b')} AS avg_b_, {q('avg_s')} AS avg_s_ "
        f"FROM {TABLE} WHERE symbol = {ph} AND {ts} >= {ph} AND {ts} <= {ph}"
    )
    return (
        f"SELECT ts, delta_base, delta_quote, cvd_day_base, cvd_day_quote, "
        f"{total}(delta_base) OVER (ORDER BY ts) AS cvd_range_base, "
        f"{total}(delta_quote) OVER (ORDER BY ts) AS cvd_range_quote, "
        f"imbalance, whale_share, ret, close_, avg_b_, avg_s_ "
        f"FROM ({inner}) AS day_rows WHERE ts >= {ph} ORDER BY ts"
    )


def series_params(symbol: str, start: str, end: str) -> tuple[str, ...]:
    return (symbol, start[:10] + " 00:00:00", end, start)


SeriesValue = str | float | None


def series_row(raw: Sequence[Any]) -> dict[str, SeriesValue]:
    """One result row -> ``timestamp`` text, exact texts (rule 1) and floats (rule 2)."""
    out: dict[str, SeriesValue] = {"timestamp": timestamp_text(raw[0])}
    for name, value in zip((*SERIES, *PASSED), raw[1:], strict=True):
        if value is None:
            out[name] = None
        elif name in PASSED:
            out[name] = format(_dec(value).quantize(EIGHT, context=EXACT), "f")
        elif name in _PLACES:
            out[name] = format(_dec(value).quantize(_PLACES[name], context=EXACT), "f")
        else:
            out[name] = float(value)
    return out
