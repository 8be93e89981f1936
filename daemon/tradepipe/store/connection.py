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

**Deadlines.** A MySQL connection given a ``deadline`` (a ``time.monotonic()`` value; the
Lambda's remaining time) arms pymysql's socket timeouts before every statement, commit and
ping with the time left, so a server that accepts and never answers, or a warm connection that
went half-open, fails that call when the time is up instead of blocking for ever; once it has
passed, a call raises :class:`DeadlineExceeded` without touching the socket. A check before
reuse (``ping``) gets at most ``PING_TIMEOUT_S`` of it, so a dead warm connection leaves time for
a new one. (pymysql has no public setter: its ``_read_timeout``/``_write_timeout`` attributes
are the ones it applies to the socket before each read and write. A timeout bounds each wait
for bytes, so a server trickling a byte at a time could outlast it; a silent one cannot.)
Without a deadline, waits are unbounded as before (``tradepipe load``, local mode).

Error classes (:func:`is_transient`): deadlock (1213), lock wait timeout (1205), a duplicate key
from a concurrent first insert (1062), and a lost or refused connection (2003, 2006, 2013, ...)
are worth retrying the whole transaction; anything else is not.
"""

from __future__ import annotations

import sqlite3
import time
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
# The most of a deadline's time a liveness check of a warm connection may take.
PING_TIMEOUT_S = 2.0

Params = Sequence[Any]


class DeadlineExceeded(TimeoutError):
    """The caller's deadline passed before the database answered."""


def time_left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (``time.monotonic()``), ``None`` without one."""
    return None if deadline is None else deadline - time.monotonic()


class Connection:
    """One open connection and its dialect; ``deadline`` bounds every call (module docstring)."""

    def __init__(self, url: DbUrl, raw: Any, deadline: float | None = None) -> None:
        self.url = url
        self.dialect = url.dialect
        self.raw = raw
        self.ph = "%s" if self.dialect == "mysql" else "?"
        self.deadline = deadline

    def _arm(self, at_most: float | None = None) -> None:
        """Set the socket timeouts to the time left (capped at ``at_most``) before a call."""
        if self.dialect != "mysql":
            return
        left = time_left(self.deadline)
        if left is not None and left <= 0:
            raise DeadlineExceeded("the deadline passed before the database answered")
        if at_most is not None:
            left = at_most if left is None else min(left, at_most)
        self.raw._read_timeout = self.raw._write_timeout = left

    def quote(self, name: str) -> str:
        return f"`{name}`" if self.dialect == "mysql" else f'"{name}"'

    def query(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        self._arm()
        cur = self.raw.cursor()
        try:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall()) if cur.description else []
        finally:
            cur.close()

    def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        self._arm()
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
            self._arm()
            self.raw.begin()
        try:
            yield self
        except BaseException:
            self.rollback()
            raise
        self._arm()
        self.raw.commit()

    def rollback(self) -> None:
        try:
            self._arm()
            self.raw.rollback()
        except (pymysql.MySQLError, sqlite3.Error):
            pass  # the connection is gone: the server rolls back what was not committed
        except DeadlineExceeded:
            self.close()  # no time to ask: closing makes the server roll back

    def alive(self) -> bool:
        """A cheap check before reuse: ``ping`` on MySQL (without reconnecting)."""
        if self.dialect == "sqlite":
            return True
        try:
            self._arm(at_most=PING_TIMEOUT_S)
            self.raw.ping(reconnect=False)
        except pymysql.MySQLError:
            return False
        return True

    def close(self) -> None:
        try:
            self.raw.close()
        except (pymysql.MySQLError, sqlite3.Error):
            pass  # already closed or broken: nothing left to release


def connect(url: DbUrl, *, read_only: bool = False, deadline: float | None = None) -> Connection:
    """A new connection; with ``deadline``, opening it (TCP connect, handshake, the session's
    settings) is bounded by it too, and :class:`DeadlineExceeded` if it has already passed."""
    if isinstance(url, SqliteUrl):
        return Connection(url, _connect_sqlite(url, read_only))
    left = time_left(deadline)
    if left is not None and left <= 0:
        raise DeadlineExceeded(f"no time left to connect to {url}")
    return Connection(url, _connect_mysql(url, read_only, left), deadline)


def _connect_sqlite(url: SqliteUrl, read_only: bool) -> sqlite3.Connection:
    if read_only:
        uri = f"{Path(url.path).resolve().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=5.0, isolation_level=None)
    if url.path != ":memory:":
        Path(url.path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: no implicit transactions; Connection.transaction() says BEGIN.
    return sqlite3.connect(url.path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)


def _connect_mysql(
    url: MysqlUrl, read_only: bool, left: float | None = None
) -> pymysql.connections.Connection[Any]:
    connect_timeout = (
        min(url.connect_timeout, READ_CONNECT_TIMEOUT_S) if read_only else url.connect_timeout
    )
    return pymysql.connect(
        host=url.host,
        port=url.port,
        user=url.user,
        password=url.password,
        database=url.database,
        charset="utf8mb4",
        autocommit=read_only,
        connect_timeout=connect_timeout if left is None else min(connect_timeout, left),
        read_timeout=left,  # the handshake and init_command wait on reads too
        write_timeout=left,
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

    def get(self, deadline: float | None = None) -> Connection:
        """The connection, bounded by ``deadline`` from now on (see the module docstring)."""
        if self._conn is not None:
            self._conn.deadline = deadline
            if not self._conn.alive():
                self.close()
        if self._conn is None:
            conn = connect(self.url, read_only=self.read_only, deadline=deadline)
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
