"""Symbols by rule (``feed.symbols = *``): which symbols to stream, from ``exchangeInfo``.

Rules:
1. The symbols are those of ``GET /api/v3/exchangeInfo`` with ``status`` ``TRADING`` whose
   ``quoteAsset`` is one of ``feed.quote_assets`` (any, when empty): :func:`select`. Entries
   that are not objects with string fields are skipped (counted in the log line), never fatal.
2. At start the list must be read (:func:`resolve`, retried within
   ``feed.resume_timeout_seconds``; failing that the process exits non-zero and systemd
   restarts it): no symbols, nothing to stream.
3. Every ``feed.symbols_refresh_seconds`` it is read again (:class:`SymbolWatcher`): symbols
   new in the list are *listed* (subscribed, their trades from the listing on fetched: see
   :meth:`~tradepipe.producer.service.Producer.add_symbols`), symbols gone are *delisted*
   (unsubscribed); both are logged (``symbols_listed``, ``symbols_delisted``) and counted
   (``tradepipe_symbols_listed_total``, ``tradepipe_symbols_delisted_total``). A failed read
   keeps the current list (logged, ``tradepipe_exchange_info_failures_total``) and is retried
   at the next refresh; an answer with no symbol at all is taken for a failure, not a delisting
   of the whole market.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.rest import AggTradesClient, RestError

log = structlog.get_logger(__name__)


class NoSymbols(Exception):
    """The exchange's list could not be read (or matched nothing) in time (rule 2)."""


def select(info: dict[str, Any], quote_assets: Sequence[str] = ()) -> list[str]:
    """Rule 1: the ``TRADING`` symbols (upper-case, sorted) quoted in ``quote_assets``."""
    quotes = {q.upper() for q in quote_assets}
    out: set[str] = set()
    skipped = 0
    for item in info.get("symbols", []):
        symbol = item.get("symbol") if isinstance(item, dict) else None
        if not isinstance(symbol, str) or not symbol.isalnum():
            skipped += 1
            continue
        if item.get("status") != "TRADING":
            continue
        if quotes and item.get("quoteAsset") not in quotes:
            continue
        out.add(symbol.upper())
    if skipped:
        log.warning("exchange_info_entries_skipped", count=skipped)
    return sorted(out)


async def resolve(
    client: AggTradesClient,
    quote_assets: Sequence[str],
    within: float,
    metrics: ProducerMetrics,
) -> list[str]:
    """Rule 2: the symbols to start with, retrying for ``within`` seconds."""
    deadline = time.monotonic() + within
    delay = 0.5
    while True:
        why = await _read(client, quote_assets, metrics)
        if isinstance(why, list):
            log.info("symbols_resolved", count=len(why), quote_assets=list(quote_assets))
            return why
        if time.monotonic() + delay > deadline:
            raise NoSymbols(f"exchangeInfo: {why} (for {within:g} s)")
        await asyncio.sleep(delay)
        delay = min(5.0, delay * 2)


async def _read(
    client: AggTradesClient, quote_assets: Sequence[str], metrics: ProducerMetrics
) -> list[str] | str:
    """The symbols, or why there are none (logged and counted)."""
    try:
        symbols = select(await client.exchange_info(), quote_assets)
    except RestError as exc:
        why = str(exc)
    else:
        if symbols:
            return symbols
        why = f"no TRADING symbol quoted in {list(quote_assets) or 'any asset'}"
    metrics.exchange_info_failures.inc()
    log.error("exchange_info_failed", error=why)
    return why


class SymbolWatcher:
    """Rule 3: re-read the list every ``interval`` seconds and apply the difference."""

    def __init__(
        self,
        client: AggTradesClient,
        quote_assets: Sequence[str],
        interval: float,
        metrics: ProducerMetrics,
        current: Callable[[], Sequence[str]],
        listed: Callable[[list[str]], Awaitable[None]],
        delisted: Callable[[list[str]], None],
    ) -> None:
        self.client, self.quote_assets, self.interval = client, list(quote_assets), interval
        self.metrics = metrics
        self.current, self.listed, self.delisted = current, listed, delisted
        self.refreshes = 0

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.refresh()

    async def refresh(self) -> None:
        symbols = await _read(self.client, self.quote_assets, self.metrics)
        self.refreshes += 1
        if not isinstance(symbols, list):
            return
        have = set(self.current())
        new = [s for s in symbols if s not in have]
        gone = sorted(have - set(symbols))
        if gone:
            self.metrics.symbols_delisted.inc(len(gone))
            log.warning("symbols_delisted", count=len(gone), symbols=gone[:50])
            self.delisted(gone)
        if new:
            self.metrics.symbols_listed.inc(len(new))
            log.info("symbols_listed", count=len(new), symbols=new[:50])
            await self.listed(new)
