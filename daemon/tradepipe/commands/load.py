"""``tradepipe load FILE... [--db URL] [--migrate] [--rejects FILE] [--batch N]``.

Aggregates trade files and upserts the rows through the same code path as the Lambda
(:class:`tradepipe.store.Store`): exact, idempotent, so loading a file twice, or files that
overlap, or a file the Lambda already stored, leaves the rows as if every distinct trade were
loaded once. Trades are written in batches, one transaction each.

The database must be migrated first (``tradepipe migrate``), or pass ``--migrate`` to apply
pending migrations before loading (handy in local mode).
Exit status: 0 all lines good, 1 the database failed, 2 unusable arguments or unreadable files,
3 some lines rejected (the good ones were loaded).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pymysql

from tradepipe.commands.aggregate import RejectLog, trades_only
from tradepipe.commands.migrate import db_url_of
from tradepipe.config import ConfigError
from tradepipe.core import SourceError, Trade, minute_of, read_file
from tradepipe.store import DbUrlError, MigrationError, Store, connect, migrate

HELP = "aggregate files and upsert the rows (the Lambda's code path)"
EXIT_OK, EXIT_DB, EXIT_USAGE, EXIT_REJECTED = 0, 1, 2, 3
DEFAULT_BATCH = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="NDJSON (.gz ok) or data-dump CSV")
    parser.add_argument(
        "--db", metavar="URL", help="mysql://user:password@host:port/db or sqlite:///PATH (db.url)"
    )
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    parser.add_argument("--rejects", metavar="FILE", help="write rejected lines here, verbatim")
    parser.add_argument("--symbol", help="symbol of data-dump CSV files whose name lacks it")
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, metavar="N",
        help=f"trades per transaction, rounded up to a whole minute (default {DEFAULT_BATCH})",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


class Progress:
    """One self-rewriting status line on a terminal's stderr; silent when not a TTY."""

    def __init__(self, out: IO[str], total_files: int, enabled: bool) -> None:
        self.out, self.total, self.enabled = out, total_files, enabled and out.isatty()
        self.files = self.trades = self.added = 0
        self.started = time.monotonic()

    def update(self) -> None:
        if not self.enabled:
            return
        rate = self.trades / max(time.monotonic() - self.started, 1e-9)
        self.out.write(
            f"\rloading: file {self.files}/{self.total}, {self.trades:,} trades read, "
            f"{self.added:,} new ({rate:,.0f}/s)\x1b[K"
        )
        self.out.flush()

    def done(self) -> None:
        if self.enabled:
            self.out.write("\n")


def batches(trades: Iterator[Trade], size: int) -> Iterator[list[Trade]]:
    """At least ``size`` trades per batch, ended where the (symbol, minute) changes: a minute
    read in order stays in one batch, so a load can rebuild its order-flow columns (the
    upsert's rule 7) even when the minute straddles ``size``."""
    batch: list[Trade] = []
    last: tuple[str, int] | None = None
    for t in trades:
        key = (t.symbol, minute_of(t.time_ms))
        if len(batch) >= size and key != last:
            yield batch
            batch = []
        batch.append(t)
        last = key
    if batch:
        yield batch


def _counted(items: Iterator[Trade], progress: Progress) -> Iterator[Trade]:
    for t in items:
        progress.trades += 1
        yield t


def check_readable(names: list[str]) -> None:
    """Fail before any write if a file cannot be opened (``SourceError``)."""
    for name in names:
        try:
            with Path(name).open("rb"):
                pass
        except OSError as exc:
            raise SourceError(f"{name}: cannot read: {exc.strerror or exc}") from None


def load(args: argparse.Namespace, store: Store, rejects: RejectLog, progress: Progress) -> int:
    """Stream every file through the store in batches; returns the number of new trades.

    Files are checked first, then read one at a time (an unreadable file loads nothing; a
    corrupt one found mid-way stops the load after the batches already committed, which a
    rerun completes exactly, the upsert being idempotent).
    """
    check_readable(args.files)
    added = 0
    for name in args.files:
        now_ms = int(time.time() * 1000)
        trades = _counted(trades_only(read_file(name, args.symbol, now_ms), rejects), progress)
        for batch in batches(trades, args.batch):
            added += store.upsert(batch).added
            progress.added = added
            progress.update()
        progress.files += 1
        progress.update()
    return added


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        print("tradepipe load: --batch must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        url = db_url_of(args)
    except (ConfigError, DbUrlError) as exc:
        print(f"tradepipe load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rejects_file: IO[bytes] | None = None
    store = Store(url)
    progress = Progress(sys.stderr, len(args.files), not args.no_progress)
    try:
        if args.migrate:
            conn = connect(url)
            try:
                migrate(conn)
            finally:
                conn.close()
        if args.rejects:
            rejects_file = Path(args.rejects).open("wb")  # closed in finally
        rejects = RejectLog(rejects_file, sys.stderr)
        added = load(args, store, rejects, progress)
    except SourceError as exc:
        progress.done()
        print(f"tradepipe load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        progress.done()
        print(f"tradepipe load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MigrationError as exc:
        progress.done()
        print(f"tradepipe load: {exc}", file=sys.stderr)
        return EXIT_DB
    except (pymysql.MySQLError, sqlite3.Error) as exc:
        progress.done()
        print(f"tradepipe load: {url}: {exc}", file=sys.stderr)
        return EXIT_DB
    finally:
        store.close()
        if rejects_file is not None:
            rejects_file.close()
    progress.done()
    detail = ", ".join(f"{k}={v}" for k, v in sorted(rejects.by_reason.items()))
    print(
        f"tradepipe load: {progress.trades} trades read, {added} new, "
        f"{progress.trades - added} already stored or repeated; {rejects.count} lines rejected"
        + (f" ({detail})" if detail else "")
        + f"; into {url}",
        file=sys.stderr,
    )
    return EXIT_REJECTED if rejects.count else EXIT_OK
