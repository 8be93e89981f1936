"""Versioned SQL migrations: ``tradepipe/migrations/NNNN_name.<dialect>.sql``.

Rules:

1. A migration is identified by its number ``NNNN``; each dialect (``mysql``, ``sqlite``) has
   its own file for each number. They ship as package data (the repository's ``migrations/``
   is a link to the same folder), so an installed ``tradepipe`` finds them.
2. ``schema_migrations(version, name, checksum, applied_at)`` records what was applied. A
   migration is applied at most once; a recorded migration whose file has since changed is an
   error (write a new migration instead of editing an applied one).
3. Concurrency: MySQL runs under a named server lock (``GET_LOCK``) per database, SQLite under
   ``BEGIN IMMEDIATE``, so two ``migrate`` runs serialise and the second finds nothing to do.
4. MySQL commits DDL implicitly, so a migration cannot be rolled back half-way: every
   statement is written to be re-runnable (``IF NOT EXISTS``), and the version is recorded only
   after all of its statements succeeded. SQLite applies each migration in one transaction.
5. Writers (``load``, the Lambda) never migrate; they call :func:`require_current`, which
   names the command to run when the schema is missing or behind.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass, field
from importlib import resources

import pymysql

from tradepipe.store.connection import Connection, mysql_code

_FILE_RE = re.compile(r"(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.(?P<dialect>mysql|sqlite)\.sql")
LOCK_TIMEOUT_S = 60


class MigrationError(RuntimeError):
    """Migrations cannot be applied, or the database's schema is not what the code needs."""


class NotMigratedError(MigrationError):
    """The database lacks migrations that writers need."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str = field(repr=False)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """Statements separated by ``;`` at the end of a line; ``--`` comment lines dropped."""
        text = "\n".join(
            line for line in self.sql.splitlines() if not line.lstrip().startswith("--")
        )
        return [s.strip() for s in re.split(r";\s*$", text, flags=re.M) if s.strip()]


def available(dialect: str) -> list[Migration]:
    """The packaged migrations for ``dialect``, in version order."""
    folder = resources.files("tradepipe") / "migrations"
    out = []
    for entry in folder.iterdir():
        match = _FILE_RE.fullmatch(entry.name)
        if match and match["dialect"] == dialect:
            out.append(Migration(int(match["version"]), match["name"], entry.read_text("utf-8")))
    out.sort(key=lambda m: m.version)
    if len({m.version for m in out}) != len(out):
        raise MigrationError(f"two {dialect} migrations share a version number")
    return out


def _create_ledger(conn: Connection) -> None:
    if conn.dialect == "mysql":
        conn.query(
            "CREATE TABLE IF NOT EXISTS `schema_migrations` ("
            "`version` INT NOT NULL PRIMARY KEY, `name` VARCHAR(255) NOT NULL, "
            "`checksum` CHAR(64) NOT NULL, "
            "`applied_at` TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP"
            ") ENGINE=InnoDB"
        )
    else:
        conn.query(
            'CREATE TABLE IF NOT EXISTS "schema_migrations" ('
            '"version" INTEGER NOT NULL PRIMARY KEY, "name" TEXT NOT NULL, '
            '"checksum" TEXT NOT NULL, '
            "\"applied_at\" TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%S', 'now'))"
            ")"
        )


def applied(conn: Connection) -> dict[int, str]:
    """version -> checksum of the migrations recorded in ``conn``'s database."""
    rows = conn.query("SELECT version, checksum FROM schema_migrations")
    return {int(v): str(c) for v, c in rows}


def _pending(conn: Connection) -> list[Migration]:
    done = applied(conn)
    out = []
    for m in available(conn.dialect):
        if m.version not in done:
            out.append(m)
        elif done[m.version] != m.checksum:
            raise MigrationError(
                f"migration {m.version:04d}_{m.name} changed after it was applied "
                "(add a new migration instead of editing an applied one)"
            )
    return out


def _record(conn: Connection, m: Migration) -> None:
    ph = conn.ph
    conn.query(
        f"INSERT INTO schema_migrations (version, name, checksum) VALUES ({ph}, {ph}, {ph})",
        (m.version, m.name, m.checksum),
    )


def migrate(conn: Connection) -> list[Migration]:
    """Apply pending migrations (rules 2-4); returns those applied now, maybe none."""
    if conn.dialect == "sqlite":
        with conn.transaction():
            _create_ledger(conn)
            todo = _pending(conn)
            for m in todo:
                for statement in m.statements():
                    conn.query(statement)
                _record(conn, m)
        return todo
    lock = f"tradepipe.migrate.{conn.url.database}"[:64]  # type: ignore[union-attr]
    got = conn.query("SELECT GET_LOCK(%s, %s)", (lock, LOCK_TIMEOUT_S))
    if not got or got[0][0] != 1:
        raise MigrationError(f"another migrate held the lock for over {LOCK_TIMEOUT_S} s")
    try:
        _create_ledger(conn)
        conn.raw.commit()
        todo = _pending(conn)
        conn.raw.commit()
        for m in todo:
            for statement in m.statements():
                conn.query(statement)
            _record(conn, m)
            conn.raw.commit()
        return todo
    finally:
        conn.query("SELECT RELEASE_LOCK(%s)", (lock,))
        conn.raw.commit()


def require_current(conn: Connection) -> None:
    """Raise :class:`NotMigratedError` unless every packaged migration is applied (rule 5)."""
    try:
        done = applied(conn)
    except (pymysql.ProgrammingError, sqlite3.OperationalError) as exc:
        if not _missing_table(exc):
            raise
        done = {}
    finally:
        conn.rollback()  # end the read: an idle connection must hold no snapshot or locks
    missing = [m for m in available(conn.dialect) if m.version not in done]
    if missing:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in missing)
        raise NotMigratedError(
            f"database {conn.url} lacks migration(s) {names}: "
            f"run `tradepipe migrate --db URL` first"
        )


def _missing_table(exc: BaseException) -> bool:
    """MySQL 1146 "table doesn't exist"; SQLite "no such table"."""
    return mysql_code(exc) == 1146 or "no such table" in str(exc)
