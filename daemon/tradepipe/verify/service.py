"""Verify in the background: ``tradepipe run``'s pass over closed minutes, shaped like the
other services (``serve(settings, stop, options) -> int``).

Rules:
1. Every ``verify.interval_seconds`` a pass runs :class:`~tradepipe.verify.Verifier` with repair
   over every stored symbol, up to the default end of the range (runner rule 1: closed minutes
   only), against ``feed.rest_url``; the first pass starts at the oldest row, later ones
   :data:`OVERLAP_MINUTES` before the newest minute the previous pass checked.
2. A pass that fails (the database or the exchange) is logged at error level, counted
   (``tradepipe_verify_failures_total``) and tried again next interval: the pipeline never
   stops for its verifier.
3. ``stop`` ends it between passes, or cancels a pass in progress (each window's verdicts are
   one transaction: nothing is half-written).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass, field

import pymysql
import structlog

from tradepipe.config import Settings
from tradepipe.core import MINUTE_MS
from tradepipe.store import MigrationError, Store
from tradepipe.verify.exchange import ExchangeError, open_exchange
from tradepipe.verify.metrics import VerifyMetrics
from tradepipe.verify.runner import Report, Request, Verifier

log = structlog.get_logger("tradepipe.verify")

OVERLAP_MINUTES = 10
_FAILURES = (ExchangeError, MigrationError, pymysql.MySQLError, sqlite3.Error, OSError)


@dataclass
class Options:
    metrics: VerifyMetrics = field(default_factory=VerifyMetrics)
    on_pass: list[Report] | None = None  # tests: every pass's report is appended here


async def serve(settings: Settings, stop: asyncio.Event, options: Options | None = None) -> int:
    """Rules 1-3 until ``stop``; returns 0 (failed passes are counted, never fatal)."""
    options = options or Options()
    interval = settings.verify.interval_seconds
    if interval <= 0:
        await stop.wait()
        return 0
    since: int | None = None
    store = Store(settings.db.url)
    feed = settings.feed
    async with open_exchange(feed.rest_url, feed.rest_weight_per_minute) as exchange:
        verifier = Verifier(store, exchange)
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await stop.wait()
                if stop.is_set():
                    break
                pass_ = asyncio.ensure_future(verifier.run(Request(since_ms=since, repair=True)))
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait([pass_, stopping], return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not pass_.done():
                    pass_.cancel()
                    with contextlib.suppress(asyncio.CancelledError, *_FAILURES):
                        await pass_
                    break
                try:
                    report = pass_.result()
                except _FAILURES as exc:
                    options.metrics.failed()
                    log.error("verify_pass_failed", error=f"{type(exc).__name__}: {exc}")
                    continue
                options.metrics.record(report)
                if options.on_pass is not None:
                    options.on_pass.append(report)
                if report.checks:
                    newest = max(c.minute_ms for c in report.checks)
                    since = newest - OVERLAP_MINUTES * MINUTE_MS
                log.info("verify_pass", summary=report.summary())
        finally:
            await verifier.close()
    return 0
