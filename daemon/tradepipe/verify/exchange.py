"""What ``tradepipe verify`` asks the exchange, through the producer's REST client
(:class:`tradepipe.producer.rest.AggTradesClient`: pacing within the weight budget,
``X-MBX-USED-WEIGHT-1M``, 429/418 ``Retry-After``, 451).

Rules:
1. **Klines** are fetched 1000 minutes a request (weight 2); a minute the exchange has no kline
   for, or one with ``n = 0``, had no trades.
2. **Trades** are fetched by id (``fromId``, 1000 a page, weight 4) for a known id range, or by
   time (``startTime``/``endTime`` for the first page, then ``fromId``) for a minute; only
   trades inside the range asked for are returned, validated by the one parser.
3. **Retries are bounded** (stamina: ``attempts`` and ``timeout``): a transient failure (network,
   5xx, 403) is retried with backoff, 429/418 after exactly ``Retry-After``; when the bound is
   reached, or the exchange refuses the request (4xx, 451), :class:`ExchangeError` says which
   request failed and the run stops with nothing half-written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import stamina

from tradepipe.core import MINUTE_MS, ParseError, Trade, minute_text, trade_from_object
from tradepipe.core.checks import Kline, KlineError, kline_of_rest
from tradepipe.producer.metrics import ProducerMetrics
from tradepipe.producer.rest import (
    MAX_LIMIT,
    AggTradesClient,
    RateLimited,
    RestError,
    RestUnavailable,
)


class ExchangeError(RuntimeError):
    """The exchange could not answer what verify needs (rule 3)."""


def _retry_hook(exc: Exception) -> bool | float:
    if isinstance(exc, RateLimited):
        return exc.retry_after
    return isinstance(exc, RestUnavailable)


class Exchange:
    def __init__(
        self,
        client: AggTradesClient,
        *,
        attempts: int = 8,
        timeout: float = 300.0,
        wait_initial: float = 0.5,
    ) -> None:
        self.client = client
        self.attempts, self.timeout, self.wait_initial = attempts, timeout, wait_initial
        self.requests = 0

    async def _get(self, what: str, call: Any, *args: Any) -> list[Any]:
        try:
            async for attempt in stamina.retry_context(
                on=_retry_hook, attempts=self.attempts, timeout=self.timeout,
                wait_initial=self.wait_initial, wait_max=30.0,
            ):  # fmt: skip
                with attempt:
                    self.requests += 1
                    page: list[Any] = await call(*args)
                    return page
        except RestError as exc:
            raise ExchangeError(f"{what}: {exc}") from exc
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def klines(self, symbol: str, first_ms: int, last_ms: int) -> dict[int, Kline]:
        """Rule 1: the klines of minutes ``first_ms..last_ms`` that had trades, by minute."""
        out: dict[int, Kline] = {}
        start = first_ms
        while start <= last_ms:
            end = min(last_ms, start + (MAX_LIMIT - 1) * MINUTE_MS)
            page = await self._get(
                f"klines {symbol} {minute_text(start)}..{minute_text(end)}",
                # endTime = the last minute's close: whether the exchange bounds the open or
                # the close time by it, that minute is in and the next one is not
                self.client.klines, symbol, start, end + MINUTE_MS - 1,
            )  # fmt: skip
            for item in page:
                try:
                    k = kline_of_rest(item)
                except KlineError as exc:
                    raise ExchangeError(f"klines {symbol}: {exc}") from None
                if first_ms <= k.open_ms <= last_ms and k.trades > 0:
                    out[k.open_ms] = k
            start = end + MINUTE_MS
        return out

    async def trades_by_id(self, symbol: str, first_id: int, last_id: int) -> list[Trade]:
        """Rule 2: the trades with ids ``first_id..last_id`` the exchange has."""
        out: list[Trade] = []
        next_id = first_id
        while next_id <= last_id:
            limit = min(MAX_LIMIT, last_id - next_id + 1)
            page = await self._get(
                f"aggTrades {symbol} fromId={next_id}", self.client.fetch, symbol, next_id, limit
            )
            trades = self._trades(symbol, page)
            out.extend(t for t in trades if first_id <= t.agg_id <= last_id)
            if not trades or trades[-1].agg_id >= last_id or len(page) < limit:
                break
            next_id = trades[-1].agg_id + 1
        return out

    async def trades_of_minute(self, symbol: str, minute_ms: int) -> list[Trade]:
        """Rule 2: every trade of ``symbol`` in the minute."""
        end_ms = minute_ms + MINUTE_MS - 1
        page = await self._get(
            f"aggTrades {symbol} minute {minute_ms}",
            self.client.fetch_window, symbol, minute_ms, end_ms, MAX_LIMIT,
        )  # fmt: skip
        trades = self._trades(symbol, page)
        out = [t for t in trades if minute_ms <= t.time_ms <= end_ms]
        while len(page) == MAX_LIMIT and trades and trades[-1].time_ms <= end_ms:
            page = await self._get(
                f"aggTrades {symbol} fromId={trades[-1].agg_id + 1}",
                self.client.fetch, symbol, trades[-1].agg_id + 1, MAX_LIMIT,
            )  # fmt: skip
            trades = self._trades(symbol, page)
            out.extend(t for t in trades if minute_ms <= t.time_ms <= end_ms)
        return out

    @staticmethod
    def _trades(symbol: str, page: list[Any]) -> list[Trade]:
        out = []
        for item in page:
            if not isinstance(item, dict):
                raise ExchangeError(f"aggTrades {symbol}: {item!r:.80} is not an object")
            try:
                out.append(trade_from_object(item, symbol.upper()))
            except ParseError as exc:
                raise ExchangeError(f"aggTrades {symbol}: {exc}") from None
        return out


@asynccontextmanager
async def open_exchange(
    rest_url: str, weight_per_minute: int, metrics: ProducerMetrics | None = None
) -> AsyncIterator[Exchange]:
    """An :class:`Exchange` on its own HTTP session (closed on exit)."""
    async with aiohttp.ClientSession() as session:
        client = AggTradesClient(rest_url, session, metrics or ProducerMetrics(), weight_per_minute)
        yield Exchange(client)
