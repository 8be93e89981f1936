"""``tradepipe aggregate FILE... [--format csv|jsonl] [--rejects FILE]``.

Exit status: 0 all lines good, 3 some lines rejected, 2 unusable arguments or unreadable files.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import msgspec

from tradepipe.core import (
    ROW_COLUMNS,
    MinutePartial,
    Rejected,
    SourceError,
    Trade,
    aggregate_file,
    rows_of,
)
from tradepipe.core.aggregate import Aggregator
from tradepipe.core.sources import open_body

HELP = "offline: trade files -> per-minute rows on stdout"
EXIT_OK, EXIT_USAGE, EXIT_REJECTED = 0, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="NDJSON (.gz ok) or data-dump CSV")
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--rejects", metavar="FILE", help="write rejected lines here, verbatim")
    parser.add_argument(
        "--symbol", help="symbol of data-dump CSV files whose name does not carry it"
    )


class RejectLog:
    """Reports rejected lines on stderr and optionally copies them verbatim to a file."""

    def __init__(self, out: IO[bytes] | None, err: IO[str]) -> None:
        self.out, self.err, self.count = out, err, 0
        self.by_reason: dict[str, int] = {}

    def add(self, r: Rejected) -> None:
        self.count += 1
        self.by_reason[r.error.reason] = self.by_reason.get(r.error.reason, 0) + 1
        print(f"{r.source}:{r.lineno}: rejected: {r.error}", file=self.err)
        if self.out is not None:
            self.out.write(r.raw + b"\n")


def trades_only(items: Iterator[Trade | Rejected], rejects: RejectLog) -> Iterator[Trade]:
    for item in items:
        if isinstance(item, Trade):
            yield item
        else:
            rejects.add(item)


def aggregate_files(
    files: list[str], rejects: RejectLog, symbol: str | None = None
) -> dict[tuple[str, int], MinutePartial]:
    """Aggregate many files as one set of trades, streaming: a trade repeated across files
    counts once. Unreadable files raise :class:`SourceError` before any output."""
    for name in files:  # every file readable before any work (and no handle left open)
        open_body(name, symbol).close()
    agg = Aggregator()
    now_ms = int(time.time() * 1000)  # trade times more than an hour ahead are refused
    for name in files:
        for rejected in aggregate_file(name, agg, symbol, now_ms):
            rejects.add(rejected)
    return agg.result()


def run(args: argparse.Namespace) -> int:
    rejects_file: IO[bytes] | None = None
    try:
        if args.rejects:
            rejects_file = Path(args.rejects).open("wb")
        rejects = RejectLog(rejects_file, sys.stderr)
        try:
            partials = aggregate_files(args.files, rejects, args.symbol)
        except SourceError as exc:
            print(f"tradepipe aggregate: {exc}", file=sys.stderr)
            return EXIT_USAGE
    except OSError as exc:
        print(f"tradepipe aggregate: cannot write {args.rejects}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if rejects_file is not None:
            rejects_file.close()
    write_rows(partials.values(), args.format, sys.stdout)
    good = sum(p.count_b + p.count_s for p in partials.values())
    detail = ", ".join(f"{k}={v}" for k, v in sorted(rejects.by_reason.items()))
    print(
        f"tradepipe aggregate: {len(partials)} rows from {good} trades; "
        f"{rejects.count} lines rejected" + (f" ({detail})" if detail else ""),
        file=sys.stderr,
    )
    return EXIT_REJECTED if rejects.count else EXIT_OK


def write_rows(partials: object, fmt: str, out: IO[str]) -> None:
    rows = rows_of(partials)  # type: ignore[arg-type]
    if fmt == "jsonl":
        for row in rows:
            out.write(msgspec.json.encode(row.as_dict()).decode() + "\n")
        return
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ROW_COLUMNS)
    for row in rows:
        writer.writerow(row.texts())
