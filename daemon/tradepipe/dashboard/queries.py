"""Read-only queries of ``trade_minutes`` for the dashboard, on SQLite or MySQL.

Rules:
1. Read only. SQLite is opened with ``mode=ro``; the MySQL connection issues ``SELECT`` only.
2. Decimals leave here as exact contract text (:func:`tradepipe.core.rows.decimal_text` at the
   column's fixed scale), never as floats: a ``Decimal`` from MySQL and a text or integer from
   SQLite print the same. A float in the table is a bug in whatever wrote it and raises
   :class:`QueryError` instead of being rounded silently. Counts and ids are JSON integers
   when JavaScript holds them exactly (up to 2^53-1: every id the parser accepts), else
   decimal text (a sum that large would be rounded by the page's numbers).
3. Timestamps are minute text ``YYYY-MM-DD HH:MM:00`` (UTC) in and out; ranges are inclusive.
4. Any database failure surfaces as :class:`QueryError` with a message fit to show a user; the
   server turns it into a 503 and keeps running.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import ssl
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from tradepipe.core.rows import DECIMAL_COLUMNS, INT_COLUMNS, ROW_COLUMNS, decimal_text
from tradepipe.store.url import DbUrlError, MysqlUrl, SqliteUrl, parse_db_url

MAX_SAFE_INTEGER = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER
MAX_ROWS = 20_000  # two weeks of minutes for one symbol; the page asks for less

RawRow = Sequence[Any]
Value = str | int | None  # decimals as exact text, counts and ids as ints, None for no trades


class QueryError(Exception):
    """The database could not answer (missing, unreachable, no table yet, bad contents)."""


class MinuteReader(Protocol):
    """What the dashboard needs from a database holding ``trade_minutes``."""

    where: str  # for messages: a path, or a MySQL URL without its password

    async def symbols(self) -> list[str]: ...

    async def newest(self, symbol: str) -> str | None: ...

    async def minutes(self, symbol: str, start: str, end: str) -> list[dict[str, Value]]: ...

    async def close(self) -> None: ...


def _minute_text(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        return value
    raise QueryError(f"timestamp {value!r} is neither text nor a datetime")


def _exact(value: object, column: str) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, float):
        raise QueryError(f"column {column} holds a float ({value!r}): refusing to round it")
    if column in DECIMAL_COLUMNS:
        try:
            return decimal_text(Decimal(str(value)), column)
        except ArithmeticError:
            raise QueryError(f"column {column} holds {value!r}, not a decimal") from None
    if column in INT_COLUMNS:
        number = int(str(value))
        return number if number <= MAX_SAFE_INTEGER else str(number)
    if column == "timestamp":
        return _minute_text(value)
    return str(value)


def row_texts(raw: RawRow) -> dict[str, Value]:
    """A raw database row in :data:`ROW_COLUMNS` order -> column -> exact text, int or None."""
    return {column: _exact(value, column) for column, value in zip(ROW_COLUMNS, raw, strict=True)}


def _select(quote: str, placeholder: str) -> str:
    columns = ", ".join(f"{quote}{c}{quote}" for c in ROW_COLUMNS)
    ts = f"{quote}timestamp{quote}"
    return (
        f"SELECT {columns} FROM trade_minutes WHERE symbol = {placeholder}"
        f" AND {ts} >= {placeholder} AND {ts} <= {placeholder} ORDER BY {ts} LIMIT {MAX_ROWS}"
    )


def _newest(quote: str, placeholder: str) -> str:
    return f"SELECT MAX({quote}timestamp{quote}) FROM trade_minutes WHERE symbol = {placeholder}"


SYMBOLS_SQL = "SELECT DISTINCT symbol FROM trade_minutes ORDER BY symbol"


class SqliteMinutes:
    """SQLite through the standard library, one short read-only connection per query in a
    worker thread (``sqlite3`` blocks; a thread keeps the event loop free)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._uri = f"{path.resolve().as_uri()}?mode=ro"

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            raise QueryError(f"database file {self.path} does not exist")
        try:
            conn = sqlite3.connect(self._uri, uri=True, timeout=5.0)
        except sqlite3.Error as exc:
            raise QueryError(f"cannot open {self.path}: {exc}") from None
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise QueryError(f"query on {self.path} failed: {exc}") from None
        finally:
            conn.close()

    async def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._query, sql, params)

    async def symbols(self) -> list[str]:
        return [str(r[0]) for r in await self._run(SYMBOLS_SQL)]

    async def newest(self, symbol: str) -> str | None:
        rows = await self._run(_newest('"', "?"), (symbol,))
        return None if not rows or rows[0][0] is None else _minute_text(rows[0][0])

    async def minutes(self, symbol: str, start: str, end: str) -> list[dict[str, Value]]:
        return [row_texts(r) for r in await self._run(_select('"', "?"), (symbol, start, end))]

    async def close(self) -> None:
        return None


class MysqlMinutes:
    """MySQL/MariaDB through a small aiomysql pool, created on first use."""

    def __init__(self, url: MysqlUrl) -> None:
        self._kwargs: dict[str, Any] = {
            "host": url.host,
            "port": url.port,
            "user": url.user,
            "password": url.password,
            "db": url.database,
            "autocommit": True,
            "connect_timeout": min(url.connect_timeout, 5.0),
        }
        if url.ssl_ca:
            self._kwargs["ssl"] = ssl.create_default_context(cafile=url.ssl_ca)
        self.where = str(url)  # never shows the password
        self._pool: Any = None
        self._lock = asyncio.Lock()

    async def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        import aiomysql  # imported here: `tradepipe dashboard --db sqlite://` never needs it
        import pymysql

        driver_errors = (pymysql.err.Error, OSError, TimeoutError)

        async with self._lock:
            if self._pool is None:
                try:
                    self._pool = await aiomysql.create_pool(minsize=0, maxsize=2, **self._kwargs)
                except driver_errors as exc:
                    raise QueryError(f"cannot connect to MySQL {self.where}: {exc}") from None
        try:
            async with self._pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute(sql, tuple(params))
                return list(await cur.fetchall())
        except driver_errors as exc:  # the pool drops broken connections itself
            raise QueryError(f"query on MySQL {self.where} failed: {exc}") from None

    async def symbols(self) -> list[str]:
        return [str(r[0]) for r in await self._run(SYMBOLS_SQL)]

    async def newest(self, symbol: str) -> str | None:
        rows = await self._run(_newest("`", "%s"), (symbol,))
        return None if not rows or rows[0][0] is None else _minute_text(rows[0][0])

    async def minutes(self, symbol: str, start: str, end: str) -> list[dict[str, Value]]:
        return [row_texts(r) for r in await self._run(_select("`", "%s"), (symbol, start, end))]

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None


def open_reader(url: str) -> SqliteMinutes | MysqlMinutes:
    """A reader for ``sqlite:///PATH`` or ``mysql://...``; :class:`DbUrlError` (a
    ``ValueError``) for anything else."""
    parsed = parse_db_url(url)
    if isinstance(parsed, SqliteUrl):
        if parsed.path == ":memory:":
            raise DbUrlError("the dashboard cannot read an in-memory SQLite database")
        return SqliteMinutes(Path(parsed.path))
    return MysqlMinutes(parsed)
