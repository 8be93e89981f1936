"""``tradepipe verify [--db URL] [--rest-url URL] [--symbol SYM ...] [--since TIME]
[--until TIME] [--repair] [--format text|jsonl] [--config FILE]``.

Proves every stored minute in a range against the exchange's 1-minute klines and the
continuity of its aggregate ids; with ``--repair``, fetches what is missing and checks again
(:mod:`tradepipe.verify.runner` has the rules, :mod:`tradepipe.core.checks` the comparison).
Every verdict is stored in ``minute_checks``.

Output: every minute that is not ``exact`` on stdout (``text``: one line each; ``jsonl``: one
object each with ``symbol``, ``minute``, ``status``, ``detail`` and the figures behind it); the
summary is the last line of stderr. With ``verify.textfile`` set, the run's metrics are written
there for node_exporter's textfile collector.

TIME: ``2024-11-24 00:07`` (UTC; also ``T`` and a trailing ``Z``, seconds ignored) or relative to
now: ``-90m``, ``-2h``, ``-1d``.

Exit status: 0 every minute in range is exact, 4 anything is not, 2 usage or configuration
errors, 1 the database or the exchange failed (nothing half-written).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import sqlite3
import sys
import time

import pymysql

from tradepipe.config import ConfigError, Settings
from tradepipe.core import minute_of
from tradepipe.core.checks import MinuteCheck
from tradepipe.observability import configure_logging
from tradepipe.store import DbUrlError, MigrationError, Store, parse_db_url
from tradepipe.verify import ExchangeError, Report, Request, Verifier, open_exchange
from tradepipe.verify.metrics import VerifyMetrics

HELP = "prove stored minutes against the exchange's klines and id continuity; --repair"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_EXACT = 0, 1, 2, 4
_RELATIVE = re.compile(r"-(\d{1,7})([mhd])")
_UNITS = {"m": 60, "h": 3600, "d": 86400}
_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M")


class UsageError(ValueError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db", metavar="URL", help="mysql://user:password@host:port/db or sqlite:///PATH (db.url)"
    )
    parser.add_argument(
        "--rest-url", metavar="URL", help="the exchange's REST base (feed.rest_url)"
    )
    parser.add_argument(
        "--symbol", action="extend", nargs="+", default=[], metavar="SYM",
        help="symbols to verify (one or more, repeatable; default: every symbol with rows)",
    )  # fmt: skip
    parser.add_argument(
        "--since", metavar="TIME",
        help="first minute, UTC '2024-11-24 00:07' or relative '-90m', '-3h', '-1d' "
        "(default: the oldest row)",
    )  # fmt: skip
    parser.add_argument(
        "--until", metavar="TIME",
        help="last minute (default: closed 2 minutes ago, and 2 minutes before the newest row)",
    )  # fmt: skip
    parser.add_argument(
        "--repair", action="store_true", help="fetch what is missing, then re-check"
    )
    parser.add_argument(
        "--format", choices=("text", "jsonl"), default="text",
        help="the minutes that are not exact on stdout: a line, or a JSON object, each",
    )  # fmt: skip
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")


def parse_time(text: str, now_s: float) -> int:
    """TIME -> the epoch ms of its minute (UTC); :class:`UsageError` naming it otherwise."""
    text = text.strip()
    if match := _RELATIVE.fullmatch(text):
        seconds = int(match[1]) * _UNITS[match[2]]
        return minute_of(int((now_s - seconds) * 1000))
    for fmt in _FORMATS:
        try:
            when = dt.datetime.strptime(text.removesuffix("Z"), fmt)  # noqa: DTZ007 - UTC
        except ValueError:
            continue
        return minute_of(int(when.replace(tzinfo=dt.UTC).timestamp() * 1000))
    raise UsageError(f"{text!r} is not a time like '2024-11-24 00:07' (UTC) or -90m, -2h, -1d")


def _line(check: MinuteCheck, fmt: str) -> str:
    if fmt == "jsonl":
        return json.dumps(
            {"symbol": check.symbol, "minute": check.minute, "status": check.status.value,
             "detail": check.describe(), **check.detail()},
            sort_keys=False,
        )  # fmt: skip
    return f"{check.symbol} {check.minute} {check.status.value}: {check.describe()}"


def print_report(report: Report, fmt: str) -> None:
    for check in report.checks:
        if check.status.value != "exact":
            print(_line(check, fmt), flush=False)
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    now = time.time()
    try:
        settings = Settings.load(args.config, os.environ)
        url = parse_db_url(args.db or settings.db.url)
        rest_url = args.rest_url or settings.feed.rest_url
        if not re.match(r"^https?://\S+$", rest_url):
            raise UsageError(f"--rest-url {rest_url!r} is not an http:// or https:// URL")
        since = parse_time(args.since, now) if args.since else None
        until = parse_time(args.until, now) if args.until else None
        if since is not None and until is not None and since > until:
            raise UsageError("--since is after --until")
        for symbol in args.symbol:
            if not symbol.isalnum() or len(symbol) > 32:
                raise UsageError(f"--symbol {symbol!r} is not a symbol like BTCUSDT")
    except (ConfigError, DbUrlError, UsageError, ValueError) as exc:
        print(f"tradepipe verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log.level, sys.stderr)  # stdout is the report
    request = Request(tuple(args.symbol), since, until, args.repair)
    metrics = VerifyMetrics()
    status = asyncio.run(
        _main(Store(url), rest_url, settings.feed.rest_weight_per_minute, request, metrics, args)
    )
    if settings.verify.textfile:
        try:
            metrics.write(settings.verify.textfile)
        except OSError as exc:
            print(f"tradepipe verify: cannot write metrics: {exc}", file=sys.stderr)
            return EXIT_FAILED
    return status


async def _main(
    store: Store,
    rest_url: str,
    weight: int,
    request: Request,
    metrics: VerifyMetrics,
    args: argparse.Namespace,
) -> int:
    async with open_exchange(rest_url, weight) as exchange:
        verifier = Verifier(store, exchange)
        try:
            report = await verifier.run(request)
        except ExchangeError as exc:
            metrics.failed()
            print(f"tradepipe verify: the exchange at {rest_url} failed: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except (MigrationError, pymysql.MySQLError, sqlite3.Error, OSError) as exc:
            metrics.failed()
            print(f"tradepipe verify: {store.url}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        finally:
            await verifier.close()
    metrics.record(report)
    print_report(report, args.format)
    print(f"tradepipe {report.summary()}", file=sys.stderr)
    return EXIT_OK if report.all_exact else EXIT_NOT_EXACT
