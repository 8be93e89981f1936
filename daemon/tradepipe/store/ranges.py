"""Reading a range of ``trade_minutes`` rows in pages, as exact values (``tradepipe export``
and the dashboard's downloads).

Rules:

1. **A range** is a set of symbols (empty: every symbol) and a half-open time interval:
   ``since <= timestamp < until``, either end open; minutes are ``YYYY-MM-DD HH:MM:00`` (UTC).
2. **Pages, in contract order.** Rows come ordered by symbol, then timestamp, in pages of at
   most ``page`` rows fetched with keyset pagination (``(symbol, timestamp)`` after the last
   row seen): memory stays bounded by a page, and every row of the range is read exactly once
   even while a writer adds rows (rows added behind the cursor are simply not in the export).
3. **Exact values.** Each row is a tuple in :data:`~tradepipe.core.rows.ROW_COLUMNS` order:
   ``str`` symbol and timestamp text, ``int`` counts and ids, ``Decimal`` decimals, ``None``
   for NULL. A float in the table is refused (:class:`RangeError`), never rounded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradepipe.core.rows import DECIMAL_COLUMNS, INT_COLUMNS, ROW_COLUMNS, timestamp_text
from tradepipe.store.connection import Connection
from tradepipe.store.minutes import TABLE, columns_sql

Value = str | int | Decimal | None
DEFAULT_PAGE = 5_000


class RangeError(ValueError):
    """A stored value that is not what the schema says (rule 3)."""


@dataclass(frozen=True, slots=True)
class RowRange:
    """Rule 1."""

    symbols: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None

    def where(self, conn: Connection) -> tuple[str, list[object]]:
        """The SQL condition and its parameters (``1 = 1`` for everything)."""
        ts, ph = conn.quote("timestamp"), conn.ph
        parts, params = ["1 = 1"], list[object]()
        if self.symbols:
            parts.append(f"symbol IN ({', '.join([ph] * len(self.symbols))})")
            params.extend(self.symbols)
        if self.since is not None:
            parts.append(f"{ts} >= {ph}")
            params.append(self.since)
        if self.until is not None:
            parts.append(f"{ts} < {ph}")
            params.append(self.until)
        return " AND ".join(parts), params


def count_rows(conn: Connection, rows: RowRange) -> int:
    where, params = rows.where(conn)
    (count,) = conn.query(f"SELECT COUNT(*) FROM {TABLE} WHERE {where}", params)[0]
    return int(count)


def iter_pages(
    conn: Connection, rows: RowRange, page: int = DEFAULT_PAGE
) -> Iterator[list[tuple[Value, ...]]]:
    """Rule 2: the range's rows as pages of exact tuples (rule 3)."""
    where, params = rows.where(conn)
    ts, ph = conn.quote("timestamp"), conn.ph
    select = f"SELECT {columns_sql(conn, ROW_COLUMNS)} FROM {TABLE} WHERE {where}"
    order = f" ORDER BY symbol, {ts} LIMIT {int(page)}"
    after: tuple[str, object] | None = None
    while True:
        if after is None:
            raw = conn.query(select + order, params)
        else:
            more = f" AND (symbol > {ph} OR (symbol = {ph} AND {ts} > {ph}))"
            raw = conn.query(select + more + order, [*params, after[0], after[0], after[1]])
        if not raw:
            return
        after = (str(raw[-1][0]), raw[-1][1])
        yield [exact_row(r) for r in raw]
        if len(raw) < page:
            return


def exact_row(raw: Sequence[Any]) -> tuple[Value, ...]:
    """A raw stored row in :data:`ROW_COLUMNS` order -> exact values (rule 3)."""
    return tuple(_exact(v, c) for c, v in zip(ROW_COLUMNS, raw, strict=True))


def _exact(value: object, column: str) -> Value:
    if value is None:
        return None
    if isinstance(value, float):
        raise RangeError(f"column {column} holds a float ({value!r}): refusing to round it")
    if column in DECIMAL_COLUMNS:
        try:
            return value if isinstance(value, Decimal) else Decimal(str(value))
        except ArithmeticError:
            raise RangeError(f"column {column} holds {value!r}, not a decimal") from None
    if column in INT_COLUMNS:
        return int(str(value))
    if column == "timestamp":
        return timestamp_text(value)
    return str(value)
