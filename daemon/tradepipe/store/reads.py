"""Reading ``trade_minutes`` for display (the dashboard): symbols, the newest minute, a range,
and a range's derived order-flow series (:mod:`tradepipe.store.series`).

Rules:

1. **Read only.** The connection is opened with ``connect(url, read_only=True)``: SQLite with
   ``mode=ro`` (a missing file is reported, never created), MySQL in autocommit so every read
   sees the newest commit; only ``SELECT`` is issued.
2. **Exact values.** Decimals leave here as exact contract text
   (:func:`tradepipe.core.rows.decimal_text` at the column's fixed scale), never as floats: a
   ``Decimal`` from MySQL and a text or integer from SQLite print the same. A float in the
   table is a bug in whatever wrote it and raises :class:`QueryError` instead of being rounded
   silently. Counts and ids are integers when JavaScript holds them exactly (up to 2^53-1:
   every id the parser accepts), else decimal text (a sum that large would be rounded by a
   browser's numbers).
3. **Minute text.** Timestamps are ``YYYY-MM-DD HH:MM:00`` (UTC) in and out
   (:func:`tradepipe.core.rows.timestamp_text`); ranges are inclusive; at most
   :data:`MAX_ROWS` rows.
4. **One connection.** A :class:`~tradepipe.store.connection.Connector`, as the writers keep
   theirs: opened on first read, checked before reuse, dropped after any failure and opened
   again by the next read. A SQLite file is opened for each read (no server to keep a
   connection to; a file replaced or removed since is seen at once).
5. **Failures are values for a user.** Any database failure raises :class:`QueryError` with a
   message fit to show (never the password); the caller decides (the dashboard answers 503
   and keeps running).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pymysql

from tradepipe.core.rows import (
    DECIMAL_COLUMNS,
    INT_COLUMNS,
    QUOTE_COLUMNS,
    ROW_COLUMNS,
    decimal_text,
    timestamp_text,
)
from tradepipe.store.checks import CHECKS_TABLE
from tradepipe.store.connection import Connection, Connector
from tradepipe.store.minutes import TABLE, columns_sql
from tradepipe.store.series import SeriesValue, prepare, series_params, series_row, series_sql
from tradepipe.store.url import DbUrl, SqliteUrl

T = TypeVar("T")
MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER
MAX_ROWS = 20_000  # two weeks of minutes for one symbol; the page asks for less

Value = str | int | None  # decimals as exact text, counts and ids as ints, None for no trades
_DRIVER_ERRORS = (pymysql.err.Error, sqlite3.Error, OSError, TimeoutError)


class QueryError(Exception):
    """The database could not answer (missing, unreachable, no table yet, bad contents)."""


def _canonical(places: int) -> re.Pattern[str]:
    """Text that :func:`decimal_text` would print unchanged at ``places`` decimals: an optional
    minus, an integer part without leading zeros (few enough digits for its context), exactly
    ``places`` decimals."""
    return re.compile(rf"-?(?:0|[1-9][0-9]{{0,99}})\.[0-9]{{{places}}}")


# The fast path of rule 2 (the page's 24 hours are ~60,000 decimals): text already in contract
# form (what the writers store, and MySQL's DECIMAL at the column's scale) is returned as is;
# anything else goes through Decimal and decimal_text, whose result the pattern guarantees equal.
_CANONICAL = {places: _canonical(places).fullmatch for places in (8, 16)}
_PLACES = {column: 16 if column in QUOTE_COLUMNS else 8 for column in DECIMAL_COLUMNS}


def _exact(value: object, column: str) -> Value:
    if value is None:
        return None
    if isinstance(value, float):
        raise QueryError(f"column {column} holds a float ({value!r}): refusing to round it")
    if column in DECIMAL_COLUMNS:
        text = value if isinstance(value, str) else str(value)
        if _CANONICAL[_PLACES[column]](text):
            return text
        try:
            return decimal_text(Decimal(str(value)), column)
        except ArithmeticError:
            raise QueryError(f"column {column} holds {value!r}, not a decimal") from None
    if column in INT_COLUMNS:
        number = int(str(value))
        return number if number <= MAX_SAFE_INTEGER else str(number)
    if column == "timestamp":
        return _minute(value)
    return str(value)


def _minute(value: object) -> str:
    try:
        return timestamp_text(value)
    except ValueError as exc:
        raise QueryError(str(exc)) from None


def row_texts(raw: Sequence[Any]) -> dict[str, Value]:
    """A raw row in :data:`ROW_COLUMNS` order -> column -> exact text, int or None (rule 2)."""
    return {column: _exact(value, column) for column, value in zip(ROW_COLUMNS, raw, strict=True)}


def _symbols_sql(conn: Connection) -> str:
    return f"SELECT DISTINCT symbol FROM {TABLE} ORDER BY symbol"


def _newest_sql(conn: Connection) -> str:
    return f"SELECT MAX({conn.quote('timestamp')}) FROM {TABLE} WHERE symbol = {conn.ph}"


def _series_sql(conn: Connection) -> str:
    prepare(conn)  # SQLite: the exact decimal functions the query calls (series.py, rule 1)
    return series_sql(conn)


def _range_sql(conn: Connection) -> str:
    ts, ph = conn.quote("timestamp"), conn.ph
    return (
        f"SELECT {columns_sql(conn, ROW_COLUMNS)} FROM {TABLE} WHERE symbol = {ph}"
        f" AND {ts} >= {ph} AND {ts} <= {ph} ORDER BY {ts} LIMIT {MAX_ROWS}"
    )


def _check_rows_sql(conn: Connection) -> str:
    """Every stored minute of the range with its newest check (or none: unchecked), and the
    checked minutes that have no row (``missing``)."""
    ts, ph = conn.quote("timestamp"), conn.ph
    return (
        f"SELECT t.{ts}, c.status FROM {TABLE} t LEFT JOIN {CHECKS_TABLE} c"
        f" ON c.symbol = t.symbol AND c.{ts} = t.{ts}"
        f" WHERE t.symbol = {ph} AND t.{ts} >= {ph} AND t.{ts} <= {ph}"
        f" UNION ALL SELECT c.{ts}, c.status FROM {CHECKS_TABLE} c"
        f" WHERE c.symbol = {ph} AND c.{ts} >= {ph} AND c.{ts} <= {ph} AND NOT EXISTS"
        f" (SELECT 1 FROM {TABLE} t WHERE t.symbol = c.symbol AND t.{ts} = c.{ts})"
        f" ORDER BY 1 LIMIT {MAX_ROWS}"
    )


class MinuteReads:
    """Rules 1-5 over one database; synchronous (the caller picks the thread)."""

    def __init__(self, url: DbUrl) -> None:
        self.url = url
        self._file = Path(url.path) if isinstance(url, SqliteUrl) else None
        self.where = str(self._file) if self._file is not None else str(url)  # no password
        self._connector = Connector(url, read_only=True)

    def missing(self) -> str | None:
        """Why no read can succeed yet, if that is already known (a SQLite file absent)."""
        if self._file is not None and not self._file.exists():
            return f"database file {self._file} does not exist"
        return None

    def symbols(self) -> list[str]:
        return [str(r[0]) for r in self._query(_symbols_sql)]

    def newest(self, symbol: str) -> str | None:
        rows = self._query(_newest_sql, (symbol,))
        return None if not rows or rows[0][0] is None else _minute(rows[0][0])

    def minutes(self, symbol: str, start: str, end: str) -> list[dict[str, Value]]:
        return [row_texts(r) for r in self._query(_range_sql, (symbol, start, end))]

    def checks(self, symbol: str, start: str, end: str) -> list[tuple[str, str]]:
        """``(minute, status)`` in the range, in time order: every stored minute (status
        ``unchecked`` until ``tradepipe verify`` has written one) and every ``missing`` one."""
        params = (symbol, start, end) * 2
        return [
            (_minute(r[0]), "unchecked" if r[1] is None else str(r[1]))
            for r in self._query(_check_rows_sql, params)
        ]

    def series(self, symbol: str, start: str, end: str) -> list[dict[str, SeriesValue]]:
        """The derived order-flow series of a range (:mod:`tradepipe.store.series`)."""
        return [series_row(r) for r in self._query(_series_sql, series_params(symbol, start, end))]

    def close(self) -> None:
        self._connector.close()

    def _query(
        self, sql_of: Callable[[Connection], str], params: Sequence[object] = ()
    ) -> list[tuple[Any, ...]]:
        return self.using(lambda conn: conn.query(sql_of(conn), params))

    def using(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)`` under rules 4 and 5 (the export's paged reads use it)."""
        if (why := self.missing()) is not None:
            raise QueryError(why)
        try:
            conn = self._connector.get()
        except _DRIVER_ERRORS as exc:
            raise QueryError(f"{self._cannot_open()}: {exc}") from None
        try:
            return work(conn)
        except _DRIVER_ERRORS as exc:
            self.close()  # rule 4: the next read starts on a new connection
            raise QueryError(f"query on {self._what()} failed: {exc}") from None
        finally:
            if self._file is not None:
                self.close()

    def _what(self) -> str:
        return self.where if self._file is not None else f"MySQL {self.where}"

    def _cannot_open(self) -> str:
        if self._file is not None:
            return f"cannot open {self.where}"
        return f"cannot connect to MySQL {self.where}"
