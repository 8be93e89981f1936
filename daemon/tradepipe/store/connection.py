"""Synchronous connections to MySQL/MariaDB (pymysql) and SQLite (sqlite3), one interface.

:class:`Connection` hides the two dialects' differences that the store needs: the parameter
placeholder, identifier quoting, and how a write transaction starts (``BEGIN`` on InnoDB, whose
``SELECT ... FOR UPDATE`` then locks rows; ``BEGIN IMMEDIATE`` on SQLite, which takes the
database's write lock at once). Every value goes through a bound parameter.

``connect(url, read_only=True)`` is for readers (the dashboard): SQLite opens the file with
``mode=ro`` (a missing file is an error, never created), MySQL runs in autocommit (each
``SELECT`` sees the newest commit and holds no snapshot) with a short connect timeout.
:class:`Connector` is the one way a connection is kept: opened on first use, checked before
reuse, dropped after a connection error and opened again by the next use.

Error classes (:func:`is_transient`): deadlock (1213), lock wait timeout (1205), a duplicate key
from a concurrent first insert (1062), and a lost or refused connection (2003, 2006, 2013, ...)
are worth retrying the whole transaction; anything else is not.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pymysql

from tradepipe.store.url import DbUrl, MysqlUrl, SqliteUrl

# MySQL error codes worth retrying: the transaction lost a race, or the connection went away.
RACE_CODES = frozenset({1205, 1213, 1062})
CONNECTION_CODES = frozenset({0, 2003, 2006, 2013, 2055, 1927, 4031})
_SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
SQLITE_BUSY_TIMEOUT_S = 30.0
# A row lock held longer than this fails the attempt (1205, retried) instead of waiting
# InnoDB's default 50 s: an invocation must finish well inside the Lambda timeout.
LOCK_WAIT_TIMEOUT_S = 10
# A reader answers a person waiting for a page: give up on an unreachable server sooner.
READ_CONNECT_TIMEOUT_S = 5.0

Params = Sequence[Any]


class Connection:
    """One open connection and its dialect."""

    def __init__(self, url: DbUrl, raw: Any) -> None:
        self.url = url
        self.dialect = url.dialect
        self.raw = raw
        self.ph = "%s" if self.dialect == "mysql" else "?"

    def quote(self, name: str) -> str:
        return f"`{name}`" if self.dialect == "mysql" else f'"{name}"'

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        cur = self.raw.cursor()
        try:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        cur = self.raw.cursor()
        try:
            cur.executemany(sql, [tuple(r) for r in rows])
        finally:
            cur.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on any error."""
        if self.dialect == "sqlite":
            self.raw.execute("BEGIN IMMEDIATE")
        else:
            self.raw.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self.raw.commit()

    def rollback(self) -> None:
        try:
            self.raw.rollback()
        except (pymysql.MySQLError, sqlite3.Error):
            pass  # the connection is gone: the server rolls back what was not committed

    def alive(self) -> bool:
        """A cheap check before reuse: ``ping`` on MySQL (without reconnecting)."""
        if self.dialect == "sqlite":
            return True
        try:
            self.raw.ping(reconnect=False)
        except pymysql.MySQLError:
            return False
        return True

    def close(self) -> None:
        try:
            self.raw.close()
        except (pymysql.MySQLError, sqlite3.Error):
            pass  # already closed or broken: nothing left to release


def connect(url: DbUrl, *, read_only: bool = False) -> Connection:
    if isinstance(url, SqliteUrl):
        return Connection(url, _connect_sqlite(url, read_only))
    return Connection(url, _connect_mysql(url, read_only))


def _connect_sqlite(url: SqliteUrl, read_only: bool) -> sqlite3.Connection:
    if read_only:
        uri = f"{Path(url.path).resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
    if url.path != ":memory:":
        Path(url.path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; Connection.transaction() says BEGIN.
    return sqlite3.connect(url.path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)


def _connect_mysql(url: MysqlUrl, read_only: bool) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(
        host=url.host,
        port=url.port,
        user=url.user,
        password=url.password,
        database=url.database,
        charset="utf8mb4",
        autocommit=read_only,
        connect_timeout=min(url.connect_timeout, READ_CONNECT_TIMEOUT_S)
        if read_only
        else url.connect_timeout,
        ssl={"ca": url.ssl_ca} if url.ssl_ca else None,
        init_command=(
            f"SET SESSION sql_mode = '{_SQL_MODE}', "
            f"SESSION innodb_lock_wait_timeout = {LOCK_WAIT_TIMEOUT_S}"
        ),
    )


class Connector:
    """One connection to ``url``, opened on first :meth:`get`, checked (:meth:`Connection.alive`)
    before each reuse and opened again once it went away; ``on_open`` runs on each new one
    (the writers' schema check) and a failure there closes it."""

    def __init__(
        self,
        url: DbUrl,
        *,
        read_only: bool = False,
        on_open: Callable[[Connection], None] = lambda _: None,
    ) -> None:
        self.url, self.read_only, self.on_open = url, read_only, on_open
        self._conn: Connection | None = None

    def get(self) -> Connection:
        if self._conn is not None and not self._conn.alive():
            self.close()
        if self._conn is None:
            conn = connect(self.url, read_only=self.read_only)
            try:
                self.on_open(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def mysql_code(exc: BaseException) -> int | None:
    if isinstance(exc, pymysql.MySQLError) and exc.args and isinstance(exc.args[0], int):
        return exc.args[0]
    return None


def is_connection_error(exc: BaseException) -> bool:
    if isinstance(exc, pymysql.err.InterfaceError):
        return True  # "(0, '')": the connection object was already closed
    return isinstance(exc, pymysql.err.OperationalError) and mysql_code(exc) in CONNECTION_CODES


def is_transient(exc: BaseException) -> bool:
    """Retrying the whole transaction may succeed (see the module docstring)."""
    if isinstance(exc, sqlite3.OperationalError):
        return "locked" in str(exc) or "busy" in str(exc)
    return mysql_code(exc) in RACE_CODES or is_connection_error(exc)
