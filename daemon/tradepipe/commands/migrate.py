"""``tradepipe migrate [--db URL] [--config FILE]``: apply pending migrations.

Applies the packaged ``migrations/`` for the URL's dialect once each and records them in
``schema_migrations``; safe to run twice or concurrently (see :mod:`tradepipe.store.migrations`).
Exit status: 0 up to date, 1 the database failed, 2 unusable arguments or configuration.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys

import pymysql

from tradepipe.config import ConfigError, Settings
from tradepipe.store import DbUrl, DbUrlError, MigrationError, available, connect, migrate
from tradepipe.store import parse_db_url as _parse

HELP = "apply migrations/ to MySQL or SQLite"
EXIT_OK, EXIT_DB, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", help="mysql://user:password@host:port/db or sqlite:///PATH (db.url)"
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")


def db_url_of(args: argparse.Namespace) -> DbUrl:
    """``--db``, else ``db.url`` from the configuration; raises ConfigError/DbUrlError."""
    text = args.db or Settings.load(args.config, os.environ).db.url
    return _parse(text)


def run(args: argparse.Namespace) -> int:
    try:
        url = db_url_of(args)
    except (ConfigError, DbUrlError) as exc:
        print(f"tradepipe migrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        conn = connect(url)
        try:
            done = migrate(conn)
        finally:
            conn.close()
    except (MigrationError, pymysql.MySQLError, sqlite3.Error, OSError) as exc:
        print(f"tradepipe migrate: {url}: {exc}", file=sys.stderr)
        return EXIT_DB
    for m in done:
        print(f"tradepipe migrate: applied {m.version:04d}_{m.name} to {url}", file=sys.stderr)
    latest = max((m.version for m in available(url.dialect)), default=0)
    if not done:
        print(f"tradepipe migrate: {url} is up to date (version {latest:04d})", file=sys.stderr)
    return EXIT_OK
