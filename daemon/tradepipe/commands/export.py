"""``tradepipe export [--db URL] [--symbol SYM ...] [--since TIME] [--until TIME]
--format csv|parquet --output FILE``: the rows of a range, every column, exact decimals.

The range is ``since <= timestamp < until`` (UTC; either end may be left open), symbols as
given (default: all), ordered by symbol then minute. CSV is ``tradepipe aggregate``'s text;
Parquet has exact ``DECIMAL`` columns (:mod:`tradepipe.export.parquet`). The file is written
to ``FILE.partial`` and renamed when complete, so a failed export leaves no truncated file.
A progress bar runs on stderr when it is a terminal (``--no-progress`` turns it off).
Exit status: 0 written, 1 the database failed or holds a value that cannot be written
exactly, 2 unusable arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pymysql
from tqdm import tqdm

from tradepipe.commands.migrate import db_url_of
from tradepipe.config import ConfigError
from tradepipe.export import FORMATS, write_rows
from tradepipe.export.parquet import ExportError
from tradepipe.store import DbUrlError, connect
from tradepipe.store.ranges import RangeError, RowRange, Value, count_rows, iter_pages

HELP = "the rows of a range as CSV or Parquet, exact decimals"
EXIT_OK, EXIT_DB, EXIT_USAGE = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", help="mysql://user:password@host:port/db or sqlite:///PATH (db.url)"
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--symbol", nargs="+", action="extend", default=[], metavar="SYM",
        help="only these symbols (default: every symbol)",
    )  # fmt: skip
    parser.add_argument(
        "--since", metavar="TIME", help="UTC, inclusive: 2026-11-24 or 2026-11-24 06:00"
    )
    parser.add_argument("--until", metavar="TIME", help="UTC, exclusive")
    parser.add_argument("--format", choices=tuple(FORMATS), required=True)
    parser.add_argument("--output", metavar="FILE", required=True, help="the file to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def utc_time(text: str, name: str) -> str:
    """A UTC time (ISO 8601, date alone allowed, ``Z`` or ``+00:00`` allowed) -> the table's
    ``YYYY-MM-DD HH:MM:SS`` text; ``ValueError`` naming the option otherwise."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a time like 2026-11-24 06:00 (UTC)") from None
    if when.tzinfo is not None:
        if when.utcoffset() != dt.timedelta(0):
            raise ValueError(f"{name} {text!r}: give the time in UTC")
        when = when.replace(tzinfo=None)
    return when.strftime("%Y-%m-%d %H:%M:%S")


def row_range(args: argparse.Namespace) -> RowRange:
    symbols = tuple(dict.fromkeys(s.strip().upper() for s in args.symbol))
    for s in symbols:
        if not s.isalnum() or len(s) > 32:
            raise ValueError(f"--symbol {s!r} is not a symbol like BTCUSDT")
    since = utc_time(args.since, "--since") if args.since else None
    until = utc_time(args.until, "--until") if args.until else None
    if since and until and since >= until:
        raise ValueError(f"--since {since} is not before --until {until}")
    return RowRange(symbols, since, until)


def _progress(
    pages: Iterator[list[tuple[Value, ...]]], total: int, enabled: bool
) -> Iterator[Sequence[tuple[Value, ...]]]:
    with tqdm(total=total, unit=" rows", disable=not enabled, file=sys.stderr) as bar:
        for page in pages:
            yield page
            bar.update(len(page))


def run(args: argparse.Namespace) -> int:
    try:
        url = db_url_of(args)
        rows = row_range(args)
    except (ConfigError, DbUrlError, ValueError) as exc:
        print(f"tradepipe export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    output = Path(args.output)
    partial = output.with_name(output.name + ".partial")
    try:
        conn = connect(url, read_only=True)
    except (pymysql.MySQLError, sqlite3.Error, OSError) as exc:
        print(f"tradepipe export: cannot open {url}: {exc}", file=sys.stderr)
        return EXIT_DB
    try:
        total = count_rows(conn, rows)
        show = not args.no_progress and sys.stderr.isatty()
        with partial.open("wb") as out:
            written = write_rows(_progress(iter_pages(conn, rows), total, show), out, args.format)
        os.replace(partial, output)
    except OSError as exc:  # the output file cannot be written
        print(f"tradepipe export: {exc}", file=sys.stderr)
        partial.unlink(missing_ok=True)
        return EXIT_USAGE
    except (pymysql.MySQLError, sqlite3.Error, RangeError, ExportError) as exc:
        print(f"tradepipe export: {url}: {exc}", file=sys.stderr)
        partial.unlink(missing_ok=True)
        return EXIT_DB
    finally:
        conn.close()
    print(f"tradepipe export: {written} rows to {output} ({args.format})", file=sys.stderr)
    return EXIT_OK
